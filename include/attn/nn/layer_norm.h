// Layer normalisation over the last dim, torch.nn.LayerNorm([dim]). Parameters "weight"
// (ones) and "bias" (zeros) when elementwise_affine.
#pragma once

#include "attn/nn/module.h"

namespace attn::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true);
  // x: [..., dim] -> [..., dim]
  Var forward(const Var& x) const;
  Var weight, bias;
  int64_t dim;
  double eps;
};

}  // namespace attn::nn
