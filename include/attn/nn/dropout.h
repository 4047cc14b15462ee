// Dropout, torch.nn.Dropout: in training zeroes elements with probability p and scales the
// rest by 1/(1-p); in eval the identity. Masks come from the counter RNG (seed from the
// construction Rng, counter advanced per call), so runs are reproducible.
#pragma once

#include "attn/nn/module.h"

namespace attn::nn {

class Dropout : public Module {
 public:
  Dropout(double p, Rng& rng);
  Var forward(const Var& x);
  // residual + forward(x), one fused pass when training (the same mask and floats).
  Var forward_add(const Var& residual, const Var& x);
  // forward(relu(x)), one fused pass when training (the same mask and floats).
  Var forward_relu(const Var& x);
  double p;
  DropoutStream stream;
};

}  // namespace attn::nn
