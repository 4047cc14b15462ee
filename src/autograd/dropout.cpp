#include "attn/autograd/dropout.h"

#include <memory>
#include <vector>

#include "attn/core/rng.h"
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
  const double scale = 1.0 / (1.0 - p);
  const int64_t n = av.numel();
  // The keep mask, saved for the backward (1 byte per element: cheaper than re-hashing the
  // counters there). Element-wise, so splitting over threads does not change the result.
  auto keep = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(n));
  uint8_t* k = keep->data();
  dispatch(a.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* y = out.data<T>();
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
      k[i] = counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p;
      y[i] = k[i] ? static_cast<T>(x[i] * scale) : T(0);
    }
  });
  return make_result(out, "dropout", {&a}, [keep, scale](Node& self) {
    // y = x * keep / (1 - p);  dx = dy * keep / (1 - p)
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      const uint8_t* km = keep->data();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      const int64_t n = self.value.numel();
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
      for (int64_t i = 0; i < n; ++i) {
        const T v = km[i] ? static_cast<T>(g[i] * scale) : T(0);
        d[i] = acc ? d[i] + v : v;
      }
    });
  });
}

}  // namespace attn::ag
