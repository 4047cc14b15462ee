#include "attn/autograd/dropout.h"

#include <algorithm>
#include <memory>
#include <type_traits>

#include "attn/autograd/elementwise.h"
#include "attn/core/rng.h"
#include "attn/core/storage_cache.h"
#include "attn/kernels/cpu/elementwise.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var dropout(const Var& a, double p, uint64_t seed, uint64_t offset) {
  ATTN_CHECK(p >= 0 && p < 1, "dropout: rate ", p, " must be in [0, 1)");
  if (p == 0) return a;
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  const int64_t n = av.numel();
  // The keep mask, one byte per element, saved for the backward (hashing is the costly part);
  // from the storage cache like tensors.
  const size_t bytes = static_cast<size_t>(n);
  std::shared_ptr<uint8_t> keep(static_cast<uint8_t*>(storage_alloc(bytes)),
                                [bytes](uint8_t* q) { storage_free(q, bytes); });
  dispatch(a.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* y = out.data<T>();
    uint8_t* k = keep.get();
    const T scale = static_cast<T>(1.0 / (1.0 - p));
    if constexpr (std::is_same_v<T, float>) {
      // SIMD hash; the same decisions as counter_uniform(seed, offset + i) >= p below.
      detail::for_blocks(n, [&](int64_t b, int64_t e) {
        cpu::dropout_forward(x + b, y + b, k + b, e - b, seed, offset + static_cast<uint64_t>(b), p, scale);
      });
    } else {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t kept = counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p;
        k[i] = kept;
        y[i] = x[i] * (static_cast<T>(kept) * scale);  // branch-free: keeps are random
      }
    }
  });
  return make_result(out, "dropout", {&a}, [keep, p](Node& self) {
    // y = x * keep / (1 - p);  dx = dy * keep / (1 - p)
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      const uint8_t* k = keep.get();
      const T scale = static_cast<T>(1.0 / (1.0 - p));
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      const int64_t n = self.value.numel();
      if constexpr (std::is_same_v<T, float>) {
        detail::for_blocks(n, [&](int64_t b, int64_t e) { cpu::dropout_backward(g + b, k + b, d + b, e - b, scale, acc); });
      } else {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const T v = g[i] * (static_cast<T>(k[i]) * scale);
          d[i] = acc ? d[i] + v : v;
        }
      }
    });
  });
}

namespace {
// One byte per element from the storage cache, released with the last owner.
std::shared_ptr<uint8_t> keep_mask(int64_t n) {
  const size_t bytes = static_cast<size_t>(n);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(storage_alloc(bytes)),
                                  [bytes](uint8_t* q) { storage_free(q, bytes); });
}
}  // namespace

Var dropout_add(const Var& residual, const Var& x, double p, uint64_t seed, uint64_t offset) {
  ATTN_CHECK(p >= 0 && p < 1, "dropout_add: rate ", p, " must be in [0, 1)");
  ATTN_CHECK(residual.shape() == x.shape(), "dropout_add: residual ", shape_str(residual.shape()), " and x ",
             shape_str(x.shape()), " must have the same shape");
  detail::check_same_dtype("dropout_add", residual, x);
  if (p == 0) return add(residual, x);
  if (x.dtype() != DType::f32) return add(residual, dropout(x, p, seed, offset));  // f64: the definition
  const Tensor rv = detail::contiguous(residual.value()), xv = detail::contiguous(x.value());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = xv.numel();
  std::shared_ptr<uint8_t> keep = keep_mask(n);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  {
    const float* r = rv.data<float>();
    const float* xp = xv.data<float>();
    float* y = out.data<float>();
    uint8_t* k = keep.get();
    detail::for_blocks(n, [&](int64_t b, int64_t e) {
      cpu::dropout_add_forward(r + b, xp + b, y + b, k + b, e - b, seed, offset + static_cast<uint64_t>(b), p, scale);
    });
  }
  return make_result(out, "dropout_add", {&residual, &x}, [keep, scale](Node& self) {
    // y = residual + x * keep * scale;  dresidual = dy,  dx = dy * keep * scale
    const int64_t n = self.value.numel();
    Node* tr = grad_target(self, 0);
    if (Node* t = grad_target(self, 1)) {
      bool acc;
      float* d = grad_buffer(*t, &acc).data<float>();
      const float* g = self.grad.data<float>();
      const uint8_t* k = keep.get();
      detail::for_blocks(n, [&](int64_t b, int64_t e) { cpu::dropout_backward(g + b, k + b, d + b, e - b, scale, acc); });
    }
    if (tr) {
      if (!tr->grad.defined())
        tr->grad = self.grad;  // self's grad is released after this: handed over, no copy
      else
        detail::accumulate(*tr, self.grad);
    }
  });
}

Var relu_dropout(const Var& x, double p, uint64_t seed, uint64_t offset) {
  ATTN_CHECK(p >= 0 && p < 1, "relu_dropout: rate ", p, " must be in [0, 1)");
  if (p == 0) return relu(x);
  if (x.dtype() != DType::f32) return dropout(relu(x), p, seed, offset);  // f64: the definition
  const Tensor xv = detail::contiguous(x.value());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = xv.numel();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  {
    const float* xp = xv.data<float>();
    float* y = out.data<float>();
    detail::for_blocks(n, [&](int64_t b, int64_t e) {
      cpu::relu_dropout_forward(xp + b, y + b, e - b, seed, offset + static_cast<uint64_t>(b), p, scale);
    });
  }
  return make_result(out, "relu_dropout", {&x}, [scale](Node& self) {
    // y = relu(x) * keep * scale;  dx = dy * (y > 0 ? scale : 0)  (y > 0 iff x > 0 and kept)
    Node* t = grad_target(self, 0);
    if (!t) return;
    bool acc;
    float* d = grad_buffer(*t, &acc).data<float>();
    const float* g = self.grad.data<float>();
    const float* y = self.value.data<float>();
    detail::for_blocks(self.value.numel(),
                       [&](int64_t b, int64_t e) { cpu::relu_dropout_backward(y + b, g + b, d + b, e - b, scale, acc); });
  });
}

}  // namespace attn::ag
