// Fused layer norm: forward saves mean and rstd per row; backward in one pass per row.
#include "attn/autograd/layer_norm.h"

#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

#include "attn/kernels/cpu/elementwise.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var layer_norm(const Var& x, const Var& weight, const Var& bias, double eps) {
  ATTN_CHECK(x.dim() >= 1, "layer_norm: x must have at least one dim, got ", shape_str(x.shape()));
  const int64_t E = x.size(-1), rows = x.numel() / std::max<int64_t>(E, 1);
  for (const Var* p : {&weight, &bias})
    if (p->defined()) {
      detail::check_same_dtype("layer_norm", x, *p);
      ATTN_CHECK(p->dim() == 1 && p->size(0) == E, "layer_norm: weight/bias ", shape_str(p->shape()),
                 " does not match x ", shape_str(x.shape()), "; expected [", E, "]");
    }
  Tensor xv = x.value().contiguous();
  Tensor wv = weight.defined() ? weight.value().contiguous() : Tensor();
  Tensor bv = bias.defined() ? bias.value().contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  // Per row: mean and rstd = 1 / sqrt(var + eps), kept in double.
  auto stats = std::make_shared<std::vector<double>>(static_cast<size_t>(2 * rows));
  dispatch(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* px = xv.data<T>();
    const T* pw = wv.defined() ? wv.data<T>() : nullptr;
    const T* pb = bv.defined() ? bv.data<T>() : nullptr;
    T* py = out.data<T>();
    if constexpr (std::is_same_v<T, float>) {
      // SIMD rows (the same formulas, double statistics); rows split over threads.
      detail::for_row_blocks(rows, E, [&](int64_t r0, int64_t r1) {
        cpu::layer_norm_forward(px + r0 * E, pw, pb, py + r0 * E, stats->data() + 2 * r0, r1 - r0, E, eps);
      });
      return;
    }
#pragma omp parallel for schedule(static) if (rows * E >= detail::kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * E;
      double mu = 0, var = 0;
      for (int64_t j = 0; j < E; ++j) mu += xr[j];
      mu /= static_cast<double>(E);
      for (int64_t j = 0; j < E; ++j) var += (xr[j] - mu) * (xr[j] - mu);
      var /= static_cast<double>(E);
      const double rstd = 1.0 / std::sqrt(var + eps);
      (*stats)[2 * r] = mu;
      (*stats)[2 * r + 1] = rstd;
      for (int64_t j = 0; j < E; ++j) {
        double v = (xr[j] - mu) * rstd;
        if (pw) v *= pw[j];
        if (pb) v += pb[j];
        py[r * E + j] = static_cast<T>(v);
      }
    }
  });
  return make_result(out, "layer_norm", {&x, &weight, &bias}, [xv, wv, stats, rows, E](Node& self) {
    // xhat = (x - mu) rstd;  y = xhat w + b
    // dxhat = dy w;  dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat));
    // dw = sum_rows dy xhat;  db = sum_rows dy
    dispatch(self.value.dtype(), "layer_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* px = xv.data<T>();
      const T* pw = wv.defined() ? wv.data<T>() : nullptr;
      const T* g = self.grad.data<T>();
      Node* tx = grad_target(self, 0);
      Node* tw = grad_target(self, 1);
      Node* tb = grad_target(self, 2);
      bool ax = false, aw = false, ab = false;
      T* dx = tx ? grad_buffer(*tx, &ax).data<T>() : nullptr;
      T* dw = tw ? grad_buffer(*tw, &aw).data<T>() : nullptr;
      T* db = tb ? grad_buffer(*tb, &ab).data<T>() : nullptr;
      if (dw && !aw)
        for (int64_t j = 0; j < E; ++j) dw[j] = 0;
      if (db && !ab)
        for (int64_t j = 0; j < E; ++j) db[j] = 0;
      // dx row by row (rows independent: threads); dw, db in one serial row-major pass so
      // that their sums do not depend on the thread count.
      if constexpr (std::is_same_v<T, float>) {
        if (dx)
          detail::for_row_blocks(rows, E, [&](int64_t r0, int64_t r1) {
            cpu::layer_norm_backward_dx(px + r0 * E, pw, g + r0 * E, stats->data() + 2 * r0, dx + r0 * E, r1 - r0, E,
                                        ax);
          });
      } else {
#pragma omp parallel for schedule(static) if (dx && rows * E >= detail::kParallelMin)
      for (int64_t r = 0; r < rows; ++r) {
        if (!dx) continue;
        const double mu = (*stats)[2 * r], rstd = (*stats)[2 * r + 1];
        const T* xr = px + r * E;
        const T* gr = g + r * E;
        double m1 = 0, m2 = 0;
        for (int64_t j = 0; j < E; ++j) {
          const double xh = (xr[j] - mu) * rstd;
          const double dxh = pw ? gr[j] * static_cast<double>(pw[j]) : gr[j];
          m1 += dxh;
          m2 += dxh * xh;
        }
        m1 /= static_cast<double>(E);
        m2 /= static_cast<double>(E);
        T* dr = dx + r * E;
        for (int64_t j = 0; j < E; ++j) {
          const double xh = (xr[j] - mu) * rstd;
          const double dxh = pw ? gr[j] * static_cast<double>(pw[j]) : gr[j];
          const T v = static_cast<T>(rstd * (dxh - m1 - xh * m2));
          dr[j] = ax ? dr[j] + v : v;
        }
      }
      }
      if constexpr (std::is_same_v<T, float>) {
        // SIMD, rows in order per column (columns split over threads): the same sums.
        if (dw || db)
          detail::for_col_blocks(rows, E, [&](int64_t c0, int64_t c1) {
            cpu::layer_norm_backward_wb(px + c0, g + c0, E, stats->data(), dw ? dw + c0 : nullptr,
                                        db ? db + c0 : nullptr, rows, c1 - c0);
          });
        return;
      }
      if (dw || db)
        for (int64_t r = 0; r < rows; ++r) {
          const double mu = (*stats)[2 * r], rstd = (*stats)[2 * r + 1];
          const T* xr = px + r * E;
          const T* gr = g + r * E;
          if (dw)  // separate loops without branches inside, so that they vectorise
            for (int64_t j = 0; j < E; ++j) dw[j] += static_cast<T>(gr[j] * ((xr[j] - mu) * rstd));
          if (db)
            for (int64_t j = 0; j < E; ++j) db[j] += gr[j];
        }
    });
  });
}

}  // namespace attn::ag
