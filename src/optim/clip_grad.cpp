#include "attn/optim/clip_grad.h"

#include <algorithm>
#include <cmath>

#include "attn/core/error.h"

namespace attn::optim {

double clip_grad_norm(NamedParams& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  ATTN_CHECK(norm_type > 0, "clip_grad_norm: norm_type must be > 0, got ", norm_type);
  ATTN_CHECK(max_norm >= 0, "clip_grad_norm: max_norm must be >= 0, got ", max_norm);
  const bool inf_norm = std::isinf(norm_type);
  // torch: the norm of the per-tensor norms; accumulated here in double.
  double acc = 0;
  bool any = false;
  for (const NamedParam& p : params) {
    if (!p.grad.defined()) continue;
    ATTN_CHECK(p.grad.dtype() == DType::f32, "clip_grad_norm: grad of '", p.name, "' is ",
               dtype_name(p.grad.dtype()), ", expected f32");
    any = true;
    const Tensor g = p.grad.contiguous();
    const float* d = g.data<float>();
    double t = 0;
    for (int64_t j = 0; j < g.numel(); ++j) {
      const double a = std::fabs(static_cast<double>(d[j]));
      if (inf_norm) {
        if (std::isnan(a) || a > t) t = a;  // NaN propagates, as in torch's max
      }
      else if (norm_type == 2.0) t += a * a;
      else t += std::pow(a, norm_type);
    }
    if (inf_norm) {
      if (std::isnan(t) || t > acc) acc = t;
    }
    else acc += t;
  }
  if (!any) return 0.0;
  const double total = inf_norm ? acc : norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type);
  if (error_if_nonfinite && !std::isfinite(total))
    fail("clip_grad_norm: the total norm of the gradients is ", total, " (non-finite); gradients left unchanged");
  // clamp(max_norm / (total + 1e-6), max=1); a NaN total makes every gradient NaN, as in torch.
  const double coef = std::isnan(total) ? total : std::min(1.0, max_norm / (total + 1e-6));
  if (!(coef >= 1.0)) {
    const float c = static_cast<float>(coef);
    for (NamedParam& p : params) {
      if (!p.grad.defined()) continue;
      if (p.grad.is_contiguous()) {
        float* d = p.grad.data<float>();
        for (int64_t j = 0; j < p.grad.numel(); ++j) d[j] *= c;
      } else {
        Tensor g = p.grad.contiguous();
        float* d = g.data<float>();
        for (int64_t j = 0; j < g.numel(); ++j) d[j] *= c;
        p.grad.copy_from(g);
      }
    }
  }
  return total;
}

}  // namespace attn::optim
