// 1-D convolution: im2col + GEMM forward, and its backward, side by side.
#include "attn/autograd/conv.h"

#include <cstring>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::gemm;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {

struct ConvGeom {
  int64_t B, L, Cin, Cout, K, Lout, pad, dil;
  int64_t rows() const { return B * Lout; }  // rows of the unfolded input
  int64_t kc() const { return K * Cin; }     // its columns, ordered (k, c)
  // The input step read by output step t at tap k (may fall outside [0, L)).
  int64_t src(int64_t t, int64_t k) const { return t + k * dil - pad; }
  // K = 1 without padding reads x itself: no unfolding needed.
  bool identity() const { return K == 1 && pad == 0; }
};

// col [B·Lout, K·Cin]: col[(b, t), (k, c)] = x[b, t + k dil - pad, c], 0 outside.
template <typename T>
void im2col(const T* x, const ConvGeom& g, T* col) {
  const int64_t Cin = g.Cin, KC = g.kc();
#pragma omp parallel for schedule(static) if (g.rows() * KC >= detail::kParallelMin)
  for (int64_t r = 0; r < g.rows(); ++r) {
    const int64_t b = r / g.Lout, t = r % g.Lout;
    T* dst = col + r * KC;
    for (int64_t k = 0; k < g.K; ++k) {
      const int64_t s = g.src(t, k);
      if (s < 0 || s >= g.L)
        std::memset(static_cast<void*>(dst + k * Cin), 0, sizeof(T) * static_cast<size_t>(Cin));
      else
        std::memcpy(dst + k * Cin, x + (b * g.L + s) * Cin, sizeof(T) * static_cast<size_t>(Cin));
    }
  }
}

// The adjoint of im2col: dx[b, t + k dil - pad, c] += dcol[(b, t), (k, c)]. One thread per
// sequence, so no two threads write the same row and the sum order is fixed.
template <typename T>
void col2im_add(const T* dcol, const ConvGeom& g, T* dx) {
  const int64_t Cin = g.Cin, KC = g.kc();
#pragma omp parallel for schedule(static) if (g.rows() * KC >= detail::kParallelMin)
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t t = 0; t < g.Lout; ++t) {
      const T* src = dcol + (b * g.Lout + t) * KC;
      for (int64_t k = 0; k < g.K; ++k) {
        const int64_t s = g.src(t, k);
        if (s < 0 || s >= g.L) continue;
        T* d = dx + (b * g.L + s) * Cin;
        const T* e = src + k * Cin;
        for (int64_t c = 0; c < Cin; ++c) d[c] += e[c];
      }
    }
}

// weight [Cout, Cin, K] -> [Cout, K, Cin] (the unfolded input's column order), and back.
template <typename T>
void weight_to_kc(const T* w, const ConvGeom& g, T* wkc) {
  for (int64_t o = 0; o < g.Cout; ++o)
    for (int64_t c = 0; c < g.Cin; ++c)
      for (int64_t k = 0; k < g.K; ++k) wkc[(o * g.K + k) * g.Cin + c] = w[(o * g.Cin + c) * g.K + k];
}

}  // namespace

Var conv1d(const Var& x, const Var& w, const Var& bias, int64_t padding, int64_t dilation) {
  detail::check_same_dtype("conv1d", x, w);
  ATTN_CHECK(x.dim() == 3 && w.dim() == 3 && x.size(2) == w.size(1),
             "conv1d: expected x [B, L, Cin] and weight [Cout, Cin, K] with equal Cin, got x ", shape_str(x.shape()),
             " and weight ", shape_str(w.shape()));
  ATTN_CHECK(padding >= 0 && dilation >= 1, "conv1d: padding ", padding, " must be >= 0 and dilation ", dilation,
             " >= 1 (x ", shape_str(x.shape()), ", weight ", shape_str(w.shape()), ")");
  ConvGeom g{x.size(0), x.size(1), x.size(2), w.size(0), w.size(2), 0, padding, dilation};
  g.Lout = g.L + 2 * padding - dilation * (g.K - 1);
  ATTN_CHECK(g.K >= 1 && g.Lout >= 1, "conv1d: output length ", g.Lout, " < 1 for x ", shape_str(x.shape()),
             ", weight ", shape_str(w.shape()), ", padding ", padding, ", dilation ", dilation);
  if (bias.defined()) {
    detail::check_same_dtype("conv1d", x, bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == g.Cout, "conv1d: bias ", shape_str(bias.shape()),
               " does not match weight ", shape_str(w.shape()));
  }
  Tensor xv = detail::contiguous(x.value());
  Tensor wkc = Tensor::empty({g.Cout, g.K, g.Cin}, x.dtype());
  Tensor out = Tensor::empty({g.B, g.Lout, g.Cout}, x.dtype());
  dispatch(x.dtype(), "conv1d", [&](auto tag) {
    using T = decltype(tag);
    Tensor wv = detail::contiguous(w.value());
    weight_to_kc(wv.data<T>(), g, wkc.data<T>());
    T* o = out.data<T>();
    T beta = 0;
    if (bias.defined()) {
      Tensor bv = detail::contiguous(bias.value());
      const T* pb = bv.data<T>();
      for (int64_t r = 0; r < g.rows(); ++r) std::memcpy(o + r * g.Cout, pb, sizeof(T) * static_cast<size_t>(g.Cout));
      beta = 1;
    }
    // y [B·Lout, Cout] = col [B·Lout, K·Cin] · wkcᵀ (+ bias)
    Tensor col = g.identity() ? xv : Tensor::empty({g.rows(), g.kc()}, x.dtype());
    if (!g.identity()) im2col(xv.data<T>(), g, col.data<T>());
    gemm(false, true, g.rows(), g.Cout, g.kc(), T(1), col.data<T>(), g.kc(), wkc.data<T>(), g.kc(), beta, o, g.Cout);
  });
  return make_result(out, "conv1d", {&x, &w, &bias}, [xv, wkc, g](Node& self) {
    // y = col(x) · wkcᵀ + b:  dcol = dy · wkc (then folded into dx),  dwkc = dyᵀ · col(x),
    // db = Σ_rows dy.
    dispatch(self.value.dtype(), "conv1d", [&](auto tag) {
      using T = decltype(tag);
      const T* dy = self.grad.data<T>();
      const int64_t R = g.rows(), KC = g.kc();
      bool acc;
      if (Node* t = grad_target(self, 0)) {
        Tensor& dxt = grad_buffer(*t, &acc);
        T* dx = dxt.data<T>();
        if (g.identity()) {
          gemm(false, false, R, KC, g.Cout, T(1), dy, g.Cout, wkc.data<T>(), KC, T(acc), dx, KC);
        } else {
          Tensor dcol = Tensor::empty({R, KC}, self.value.dtype());
          gemm(false, false, R, KC, g.Cout, T(1), dy, g.Cout, wkc.data<T>(), KC, T(0), dcol.data<T>(), KC);
          if (!acc) detail::zero(dxt);
          col2im_add(dcol.data<T>(), g, dx);
        }
      }
      if (Node* t = grad_target(self, 1)) {
        Tensor col = g.identity() ? xv : Tensor::empty({R, KC}, self.value.dtype());
        if (!g.identity()) im2col(xv.data<T>(), g, col.data<T>());
        Tensor dwkc = Tensor::empty({g.Cout, g.K, g.Cin}, self.value.dtype());
        gemm(true, false, g.Cout, KC, R, T(1), dy, g.Cout, col.data<T>(), KC, T(0), dwkc.data<T>(), KC);
        T* dw = grad_buffer(*t, &acc).data<T>();
        const T* p = dwkc.data<T>();
        for (int64_t o = 0; o < g.Cout; ++o)
          for (int64_t c = 0; c < g.Cin; ++c)
            for (int64_t k = 0; k < g.K; ++k) {
              const T v = p[(o * g.K + k) * g.Cin + c];
              T& d = dw[(o * g.Cin + c) * g.K + k];
              d = acc ? d + v : v;
            }
      }
      if (Node* t = grad_target(self, 2)) {
        T* db = grad_buffer(*t, &acc).data<T>();
        if (!acc)
          for (int64_t o = 0; o < g.Cout; ++o) db[o] = 0;
        for (int64_t r = 0; r < R; ++r)
          for (int64_t o = 0; o < g.Cout; ++o) db[o] += dy[r * g.Cout + o];
      }
    });
  });
}

}  // namespace attn::ag
