#include "attn/autograd/dropout.h"

#include <algorithm>
#include <memory>
#include <type_traits>


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

}  // namespace attn::ag
