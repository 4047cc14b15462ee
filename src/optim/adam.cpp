#include "attn/optim/adam.h"

#include <algorithm>
#include <cmath>

#include "attn/core/error.h"
#include "attn/kernels/cpu/elementwise.h"

namespace attn::optim {

Adam::Adam(NamedParams params, const AdamOptions& o) : Adam(std::move(params), o, false) {}

Adam::Adam(NamedParams params, const AdamOptions& o, bool decoupled)
    : Optimizer(std::move(params), o.lr, {"exp_avg", "exp_avg_sq"}, decoupled ? "adamw" : "adam"),
      opt_(o),
      decoupled_(decoupled) {
  const char* op = decoupled ? "adamw" : "adam";
  ATTN_CHECK(o.beta1 >= 0 && o.beta1 < 1, op, ": beta1 must be in [0, 1), got ", o.beta1);
  ATTN_CHECK(o.beta2 >= 0 && o.beta2 < 1, op, ": beta2 must be in [0, 1), got ", o.beta2);
  ATTN_CHECK(o.eps >= 0, op, ": eps must be >= 0, got ", o.eps);
  ATTN_CHECK(o.weight_decay >= 0, op, ": weight_decay must be >= 0, got ", o.weight_decay);
}

nlohmann::json Adam::hyperparameters() const {
  return {{"beta1", opt_.beta1}, {"beta2", opt_.beta2}, {"eps", opt_.eps}, {"weight_decay", opt_.weight_decay}};
}

// torch 1.13 _single_tensor_adam(w): scalars in double, tensor arithmetic in float.
void Adam::update(size_t, float* p, const float* grad, int64_t n, int64_t t, std::vector<float*>& state) {
  float* m = state[0];
  float* v = state[1];
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t));
  const float step_size = static_cast<float>(lr_ / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  cpu::AdamStepScalars s;
  s.beta1 = static_cast<float>(opt_.beta1);
  s.beta2 = static_cast<float>(opt_.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - opt_.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - opt_.beta2);
  s.eps = static_cast<float>(opt_.eps);
  s.weight_decay = static_cast<float>(opt_.weight_decay);
  s.decay = static_cast<float>(1.0 - lr_ * opt_.weight_decay);
  s.step_size = step_size;
  s.bc2_sqrt = bc2_sqrt;
  s.decoupled = decoupled_;
  // Element-wise, so threads do not change the result.
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j = b * kBlock, len = std::min(kBlock, n - j);
    cpu::adam_update(p + j, grad + j, m + j, v + j, len, s);
  }
}

}  // namespace attn::optim
