// softmax / log_softmax: forward and backward side by side.
#include "attn/autograd/softmax.h"

#include <algorithm>
#include <cmath>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {
Var softmax_impl(const Var& a, int64_t dim, bool log_out) {
  const char* op = log_out ? "log_softmax" : "softmax";
  dim = detail::wrap_dim(op, dim, a.dim(), a.shape());
  auto sp = detail::split_axis(a.shape(), dim);
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  dispatch(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* y = out.data<T>();
#pragma omp parallel for schedule(static) if (a.numel() >= detail::kParallelMin)
    for (int64_t p = 0; p < sp.outer; ++p)
      for (int64_t q = 0; q < sp.inner; ++q) {
        const int64_t base = p * sp.n * sp.inner + q, st = sp.inner;
        T m = x[base];
        for (int64_t j = 1; j < sp.n; ++j) m = std::max(m, x[base + j * st]);
        if (!log_out && std::isinf(m) && m < 0) {
          // Every entry -inf (a fully masked row): zeros, not NaN, as the attention API.
          for (int64_t j = 0; j < sp.n; ++j) y[base + j * st] = T(0);
          continue;
        }
        double s = 0;
        for (int64_t j = 0; j < sp.n; ++j) s += std::exp(static_cast<double>(x[base + j * st] - m));
        if (log_out) {
          const double ls = std::log(s) + static_cast<double>(m);
          for (int64_t j = 0; j < sp.n; ++j) y[base + j * st] = static_cast<T>(x[base + j * st] - ls);
        } else {
          for (int64_t j = 0; j < sp.n; ++j)
            y[base + j * st] = static_cast<T>(std::exp(static_cast<double>(x[base + j * st] - m)) / s);
        }
      }
  });
  return make_result(out, op, {&a}, [sp, log_out, op](Node& self) {
    // softmax:     y = exp(x) / sum exp(x);   dx = y (dy - sum_j dy_j y_j)
    // log_softmax: y = x - log sum exp(x);    dx = dy - exp(y) sum_j dy_j
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const T* y = self.value.data<T>();
      const T* g = self.grad.data<T>();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
#pragma omp parallel for schedule(static) if (self.value.numel() >= detail::kParallelMin)
      for (int64_t p = 0; p < sp.outer; ++p)
        for (int64_t q = 0; q < sp.inner; ++q) {
          const int64_t base = p * sp.n * sp.inner + q, st = sp.inner;
          double s = 0;
          for (int64_t j = 0; j < sp.n; ++j)
            s += log_out ? static_cast<double>(g[base + j * st])
                         : static_cast<double>(g[base + j * st]) * y[base + j * st];
          for (int64_t j = 0; j < sp.n; ++j) {
            const int64_t i = base + j * st;
            T v = log_out ? static_cast<T>(g[i] - std::exp(static_cast<double>(y[i])) * s)
                          : static_cast<T>(y[i] * (g[i] - s));
            d[i] = acc ? d[i] + v : v;
          }
        }
    });
  });
}
}  // namespace

Var softmax(const Var& a, int64_t dim) { return softmax_impl(a, dim, false); }
Var log_softmax(const Var& a, int64_t dim) { return softmax_impl(a, dim, true); }

}  // namespace attn::ag
