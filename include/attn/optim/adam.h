// Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019), exactly as
// torch.optim.Adam / AdamW 1.13 (eps added outside the square root, after bias correction):
//   AdamW only:  p *= 1 - lr * weight_decay             (decoupled decay)
//   Adam only:   g = grad + weight_decay * p            (L2 penalty in the gradient)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// with t the parameter's step count. State: "exp_avg.<name>", "exp_avg_sq.<name>".
#pragma once

#include "attn/optim/optimizer.h"

namespace attn::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 in the gradient; AdamW: decoupled
};

class Adam : public Optimizer {
 public:
  // Throws attn::Error when lr, eps or weight decay is negative or a beta is outside [0, 1).
  Adam(NamedParams params, const AdamOptions& options);
  const char* type() const override { return decoupled_ ? "adamw" : "adam"; }
  nlohmann::json hyperparameters() const override;
  const AdamOptions& options() const { return opt_; }

 protected:
  Adam(NamedParams params, const AdamOptions& options, bool decoupled);
  void update(size_t i, float* value, const float* grad, int64_t n, int64_t param_step,
              std::vector<float*>& state) override;

 private:
  AdamOptions opt_;
  bool decoupled_;
};

// AdamW: Adam with decoupled weight decay. torch's default weight decay is 0.01; pass it
// explicitly in `options` (AdamOptions defaults to 0).
class AdamW : public Adam {
 public:
  AdamW(NamedParams params, const AdamOptions& options) : Adam(std::move(params), options, true) {}
};

}  // namespace attn::optim
