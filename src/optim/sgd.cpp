#include "attn/optim/sgd.h"

#include <cmath>

#include "attn/core/error.h"

namespace attn::optim {

namespace {
std::vector<std::string> sgd_kinds(const SgdOptions& o) {
  if (o.momentum != 0) return {"momentum_buffer"};
  return {};
}
}  // namespace

Sgd::Sgd(NamedParams params, const SgdOptions& o) : Optimizer(std::move(params), o.lr, sgd_kinds(o), "sgd"), opt_(o) {
  ATTN_CHECK(o.momentum >= 0, "sgd: momentum must be >= 0, got ", o.momentum);
  ATTN_CHECK(o.weight_decay >= 0, "sgd: weight_decay must be >= 0, got ", o.weight_decay);
  ATTN_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
             "sgd: nesterov momentum requires momentum > 0 and dampening == 0 (got momentum ", o.momentum,
             ", dampening ", o.dampening, ")");
}

nlohmann::json Sgd::hyperparameters() const {
  return {{"momentum", opt_.momentum}, {"dampening", opt_.dampening}, {"weight_decay", opt_.weight_decay},
          {"nesterov", opt_.nesterov}};
}

// Float arithmetic in torch's order so that results match torch.optim.SGD to rounding.
void Sgd::update(size_t, float* p, const float* grad, int64_t n, int64_t param_step, std::vector<float*>& state) {
  const float wd = static_cast<float>(opt_.weight_decay);
  const float mom = static_cast<float>(opt_.momentum);
  const float damp = static_cast<float>(1.0 - opt_.dampening);
  const float lr = static_cast<float>(lr_);
  float* buf = opt_.momentum != 0 ? state[0] : nullptr;
  // Element-wise, so threads do not change the result.
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (int64_t j = 0; j < n; ++j) {
    float d = grad[j];
    if (wd != 0) d += wd * p[j];
    if (buf) {
      buf[j] = param_step == 1 ? d : buf[j] * mom + damp * d;
      d = opt_.nesterov ? d + mom * buf[j] : buf[j];
    }
    p[j] -= lr * d;
  }
}

}  // namespace attn::optim
