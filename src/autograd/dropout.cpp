#include "attn/autograd/dropout.h"

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
  dispatch(a.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* y = out.data<T>();
    const int64_t n = av.numel();
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
    for (int64_t i = 0; i < n; ++i)
      y[i] = counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p ? static_cast<T>(x[i] * scale) : T(0);
  });
  return make_result(out, "dropout", {&a}, [p, seed, offset, scale](Node& self) {
    // y = x * keep / (1 - p);  dx = dy * keep / (1 - p)  (mask recomputed from the counter)
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      const int64_t n = self.value.numel();
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        T v = counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p ? static_cast<T>(g[i] * scale) : T(0);
        d[i] = acc ? d[i] + v : v;
      }
    });
  });
}

}  // namespace attn::ag
