// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
// decay, exactly as torch.optim.SGD 1.13 (Sutskever et al. 2013 form):
//   g = grad + weight_decay * p
//   buf = g                                   on a parameter's first step
//   buf = momentum * buf + (1 - dampening) * g  afterwards
//   g = nesterov ? g + momentum * buf : buf     (when momentum != 0)
//   p -= lr * g
// State: "momentum_buffer.<name>" (when momentum != 0).
#pragma once

#include "attn/optim/optimizer.h"

namespace attn::optim {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0 (as in torch)
};

class Sgd : public Optimizer {
 public:
  // Throws attn::Error on a negative lr / momentum / weight decay or an invalid Nesterov setup.
  Sgd(NamedParams params, const SgdOptions& options);
  const char* type() const override { return "sgd"; }
  nlohmann::json hyperparameters() const override;
  const SgdOptions& options() const { return opt_; }

 protected:
  void update(size_t i, float* value, const float* grad, int64_t n, int64_t param_step,
              std::vector<float*>& state) override;

 private:
  SgdOptions opt_;
};

}  // namespace attn::optim
