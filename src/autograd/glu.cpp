// Fused GLU + residual + row mask (see the header), forward and backward side by side.
#include "attn/autograd/glu.h"

#include <cmath>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var glu(const Var& h, const Var& residual, double scale, const Tensor& row_mask) {
  ATTN_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0 && h.size(-1) > 0, "glu: h ", shape_str(h.shape()),
             " must have an even, non-zero last dim [..., 2C]");
  const int64_t C = h.size(-1) / 2, rows = h.numel() / (2 * C);
  Shape out_shape = h.shape();
  out_shape.back() = C;
  if (residual.defined()) {
    detail::check_same_dtype("glu", h, residual);
    ATTN_CHECK(residual.shape() == out_shape, "glu: residual ", shape_str(residual.shape()), " must be ",
               shape_str(out_shape), " for h ", shape_str(h.shape()));
  }
  Tensor mask;
  if (row_mask.defined()) {
    ATTN_CHECK(row_mask.dtype() == h.dtype() && row_mask.numel() == rows, "glu: row_mask ",
               shape_str(row_mask.shape()), " (", dtype_name(row_mask.dtype()), ") must hold one ",
               dtype_name(h.dtype()), " weight per row of h ", shape_str(h.shape()), " (", rows, ")");
    mask = detail::contiguous(row_mask);
  }
  Tensor hv = detail::contiguous(h.value());
  Tensor out = Tensor::empty(out_shape, h.dtype());
  dispatch(h.dtype(), "glu", [&](auto tag) {
    using T = decltype(tag);
    const T* ph = hv.data<T>();
    Tensor rv = residual.defined() ? detail::contiguous(residual.value()) : Tensor();
    const T* pr = residual.defined() ? rv.data<T>() : nullptr;
    const T* pm = mask.defined() ? mask.data<T>() : nullptr;
    T* y = out.data<T>();
    detail::for_row_blocks(rows, 2 * C, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T s = static_cast<T>(scale) * (pm ? pm[r] : T(1));
        const T* a = ph + r * 2 * C;
        const T* b = a + C;
        T* yr = y + r * C;
        if (s == T(0)) {  // a masked row: no exp to compute
          for (int64_t c = 0; c < C; ++c) yr[c] = 0;
          continue;
        }
        for (int64_t c = 0; c < C; ++c) {
          const T g = a[c] / (1 + std::exp(-b[c]));
          yr[c] = s * (pr ? g + pr[r * C + c] : g);
        }
      }
    });
  });
  return make_result(out, "glu", {&h, &residual}, [hv, mask, scale, C, rows](Node& self) {
    // y = s (a σ(b) + r), s = scale · mask:  da = s dy σ(b),  db = s dy a σ(b) (1 - σ(b)),  dr = s dy
    dispatch(self.value.dtype(), "glu", [&](auto tag) {
      using T = decltype(tag);
      const T* dy = self.grad.data<T>();
      const T* ph = hv.data<T>();
      const T* pm = mask.defined() ? mask.data<T>() : nullptr;
      bool acc_h = false, acc_r = false;
      Node* th = grad_target(self, 0);
      Node* tr = grad_target(self, 1);
      T* dh = th ? grad_buffer(*th, &acc_h).data<T>() : nullptr;
      T* dr = tr ? grad_buffer(*tr, &acc_r).data<T>() : nullptr;
      detail::for_row_blocks(rows, 2 * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T s = static_cast<T>(scale) * (pm ? pm[r] : T(1));
          const T* g = dy + r * C;
          if (dh) {
            const T* a = ph + r * 2 * C;
            const T* b = a + C;
            T* da = dh + r * 2 * C;
            T* db = da + C;
            for (int64_t c = 0; c < C; ++c) {
              T va = 0, vb = 0;
              if (s != T(0)) {
                const T sg = 1 / (1 + std::exp(-b[c]));
                va = s * g[c] * sg;
                vb = va * a[c] * (1 - sg);
              }
              da[c] = acc_h ? da[c] + va : va;
              db[c] = acc_h ? db[c] + vb : vb;
            }
          }
          if (dr) {
            T* d = dr + r * C;
            for (int64_t c = 0; c < C; ++c) d[c] = acc_r ? d[c] + s * g[c] : s * g[c];
          }
        }
      });
    });
  });
}

}  // namespace attn::ag
