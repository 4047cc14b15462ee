// Matrix products: forward and backward side by side.
#include "attn/autograd/matmul.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "attn/autograd/dropout.h"
#include "attn/autograd/elementwise.h"
#include "attn/autograd/shape_ops.h"
#include "attn/kernels/cpu/elementwise.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::gemm;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var bmm(const Var& a, const Var& b, bool ta, bool tb) {
  detail::check_same_dtype("bmm", a, b);
  ATTN_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0), "bmm: expected a [Bt, ., .] and b [Bt, ., .], got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  const int64_t Bt = a.size(0), M = ta ? a.size(2) : a.size(1), K = ta ? a.size(1) : a.size(2);
  const int64_t N = tb ? b.size(1) : b.size(2), Kb = tb ? b.size(2) : b.size(1);
  ATTN_CHECK(K == Kb, "bmm: inner sizes differ: a ", shape_str(a.shape()), (ta ? " (transposed)" : ""),
             ", b ", shape_str(b.shape()), (tb ? " (transposed)" : ""));
  Tensor av = a.value().contiguous(), bv = b.value().contiguous();
  Tensor out = Tensor::empty({Bt, M, N}, a.dtype());
  const int64_t lda = a.size(2), ldb = b.size(2);
  dispatch(a.dtype(), "bmm", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < Bt; ++i)
      gemm(ta, tb, M, N, K, T(1), av.data<T>() + i * M * K, lda, bv.data<T>() + i * K * N, ldb, T(0),
           out.data<T>() + i * M * N, N);
  });
  return make_result(out, "bmm", {&a, &b}, [av, bv, ta, tb, Bt, M, N, K, lda, ldb](Node& self) {
    // C = op(A) op(B):  d op(A) = dC op(B)ᵀ,  d op(B) = op(A)ᵀ dC
    dispatch(self.value.dtype(), "bmm", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      if (Node* t = grad_target(self, 0)) {
        bool acc;
        T* d = grad_buffer(*t, &acc).data<T>();
        for (int64_t i = 0; i < Bt; ++i) {
          const T* bi = bv.data<T>() + i * K * N;
          if (!ta)  // dA [M, K] = dC [M, N] op(B)ᵀ
            gemm(false, !tb, M, K, N, T(1), g + i * M * N, N, bi, ldb, T(acc), d + i * M * K, K);
          else  // dA [K, M] = op(B) dCᵀ
            gemm(tb, true, K, M, N, T(1), bi, ldb, g + i * M * N, N, T(acc), d + i * M * K, M);
        }
      }
      if (Node* t = grad_target(self, 1)) {
        bool acc;
        T* d = grad_buffer(*t, &acc).data<T>();
        for (int64_t i = 0; i < Bt; ++i) {
          const T* ai = av.data<T>() + i * M * K;
          if (!tb)  // dB [K, N] = op(A)ᵀ dC
            gemm(!ta, false, K, N, M, T(1), ai, lda, g + i * M * N, N, T(acc), d + i * K * N, N);
          else  // dB [N, K] = dCᵀ op(A)
            gemm(true, ta, N, K, M, T(1), g + i * M * N, N, ai, lda, T(acc), d + i * K * N, K);
        }
      }
    });
  });
}

Var matmul(const Var& a, const Var& b) {
  ATTN_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected a [..., M, K] and b [..., K, N], got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  ATTN_CHECK(b.size(-2) == K, "matmul: a ", shape_str(a.shape()), " and b ", shape_str(b.shape()),
             " have different inner sizes");
  Shape os = a.shape();
  os.back() = N;
  if (b.dim() == 2) {
    // Fold every leading dim of a into the rows of one GEMM.
    const int64_t rows = a.numel() / std::max<int64_t>(K, 1);
    return reshape(bmm(reshape(a, {1, rows, K}), reshape(b, {1, K, N})), os);
  }
  Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  ATTN_CHECK(ab == bb, "matmul: batch dims of a ", shape_str(a.shape()), " and b ", shape_str(b.shape()),
             " differ");
  const int64_t Bt = shape_numel(ab);
  return reshape(bmm(reshape(a, {Bt, M, K}), reshape(b, {Bt, K, N})), os);
}

Var linear(const Var& x, const Var& w, const Var& bias) {
  detail::check_same_dtype("linear", x, w);
  ATTN_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", shape_str(x.shape()),
             " does not match weight ", shape_str(w.shape()), " (expected [..., ", w.dim() == 2 ? w.size(1) : -1,
             "])");
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  if (bias.defined()) {
    detail::check_same_dtype("linear", x, bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "linear: bias ", shape_str(bias.shape()),
               " does not match weight ", shape_str(w.shape()));
  }
  Shape os = x.shape();
  os.back() = out_f;
  Tensor xv = x.value().contiguous(), wv = w.value().contiguous();
  Tensor out = Tensor::empty(os, x.dtype());
  dispatch(x.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    if (bias.defined()) {
      Tensor bv = bias.value().contiguous();
      detail::gemm_xwt_bias(rows, out_f, in, xv.data<T>(), wv.data<T>(), bv.data<T>(), o);
    } else {
      gemm(false, true, rows, out_f, in, T(1), xv.data<T>(), in, wv.data<T>(), in, T(0), o, out_f);
    }
  });
  return make_result(out, "linear", {&x, &w, &bias}, [xv, wv, rows, in, out_f](Node& self) {
    // y = x wᵀ + b:  dx = dy w,  dw = dyᵀ x,  db = sum_rows dy
    dispatch(self.value.dtype(), "linear", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      bool acc;
      if (Node* t = grad_target(self, 0)) {
        T* d = grad_buffer(*t, &acc).data<T>();
        gemm(false, false, rows, in, out_f, T(1), g, out_f, wv.data<T>(), in, T(acc), d, in);
      }
      if (Node* t = grad_target(self, 1)) {
        T* d = grad_buffer(*t, &acc).data<T>();
        gemm(true, false, out_f, in, rows, T(1), g, out_f, xv.data<T>(), in, T(acc), d, in);
      }
      if (Node* t = grad_target(self, 2)) {
        T* d = grad_buffer(*t, &acc).data<T>();
        if constexpr (std::is_same_v<T, float>) {
          // SIMD, rows in order per column (columns split over threads): the same sums.
          detail::for_col_blocks(rows, out_f, [&](int64_t c0, int64_t c1) {
            cpu::sum_rows(g + c0, out_f, d + c0, rows, c1 - c0, acc);
          });
        } else {
          if (!acc)
            for (int64_t j = 0; j < out_f; ++j) d[j] = 0;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < out_f; ++j) d[j] += g[r * out_f + j];
        }
      }
    });
  });
}

Var linear_relu_dropout(const Var& x, const Var& w, const Var& bias, double p, uint64_t seed, uint64_t offset) {
  ATTN_CHECK(p >= 0 && p < 1, "linear_relu_dropout: rate ", p, " must be in [0, 1)");
  if (p == 0) return relu(linear(x, w, bias));
  if (x.dtype() != DType::f32 || !bias.defined()) return dropout(relu(linear(x, w, bias)), p, seed, offset);
  detail::check_same_dtype("linear_relu_dropout", x, w);
  detail::check_same_dtype("linear_relu_dropout", x, bias);
  ATTN_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1) && bias.dim() == 1 && bias.size(0) == w.size(0),
             "linear_relu_dropout: input ", shape_str(x.shape()), ", weight ", shape_str(w.shape()), " and bias ",
             shape_str(bias.shape()), " do not fit (expected [..., in], [out, in], [out])");
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Shape os = x.shape();
  os.back() = out_f;
  const Tensor xv = x.value().contiguous(), wv = w.value().contiguous(), bv = bias.value().contiguous();
  Tensor out = Tensor::empty(os, x.dtype());
  float* o = out.data<float>();
  detail::gemm_xwt_bias(rows, out_f, in, xv.data<float>(), wv.data<float>(), bv.data<float>(), o);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  detail::for_blocks(rows * out_f, [&](int64_t b, int64_t e) {  // in place on the GEMM output
    cpu::relu_dropout_forward(o + b, o + b, e - b, seed, offset + static_cast<uint64_t>(b), p, scale);
  });
  return make_result(out, "linear_relu_dropout", {&x, &w, &bias}, [xv, wv, rows, in, out_f, scale](Node& self) {
    // y = relu(x wᵀ + b) keep scale:  dz = dy (y > 0 ? scale : 0),  db = sum_rows dz,
    // dx = dz w,  dw = dzᵀ x.  dz overwrites self's gradient (released after this).
    const float* y = self.value.data<float>();
    float* dz = self.grad.data<float>();
    Node* tb = grad_target(self, 2);
    bool acc_b = false;
    std::vector<float> scratch;
    float* db = nullptr;
    if (tb) {
      db = grad_buffer(*tb, &acc_b).data<float>();
    } else {
      scratch.assign(static_cast<size_t>(out_f), 0.f);
      db = scratch.data();
    }
    // Columns split over threads, rows in order per column: the same sums at any thread count.
    detail::for_col_blocks(rows, out_f, [&](int64_t c0, int64_t c1) {
      cpu::relu_dropout_backward_bias(y + c0, dz + c0, dz + c0, db + c0, out_f, rows, c1 - c0, scale, acc_b);
    });
    bool acc;
    if (Node* t = grad_target(self, 0)) {
      float* d = grad_buffer(*t, &acc).data<float>();
      gemm(false, false, rows, in, out_f, 1.f, dz, out_f, wv.data<float>(), in, acc ? 1.f : 0.f, d, in);
    }
    if (Node* t = grad_target(self, 1)) {
      float* d = grad_buffer(*t, &acc).data<float>();
      gemm(true, false, out_f, in, rows, 1.f, dz, out_f, xv.data<float>(), in, acc ? 1.f : 0.f, d, in);
    }
  });
}

}  // namespace attn::ag
