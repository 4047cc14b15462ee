// Linear layer, torch.nn.Linear: y = x Wᵀ + b.  Parameters "weight" [out, in], "bias" [out].
#pragma once

#include "attn/nn/module.h"

namespace attn::nn {

class Linear : public Module {
 public:
  // PyTorch's init: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
  Linear(int64_t in_features, int64_t out_features, Rng& rng, bool bias = true);
  // x: [..., in] -> [..., out]
  Var forward(const Var& x) const;
  Var weight, bias;  // bias undefined when constructed without
  int64_t in_features, out_features;
};

}  // namespace attn::nn
