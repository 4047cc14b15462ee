// Fused layer normalisation over the last dim (Ba, Kiros & Hinton 2016), as
// torch.nn.functional.layer_norm with normalized_shape = [E]:
//   y = (x - mean) / sqrt(var + eps) * weight + bias,  var biased (divides by E).
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

// x: [..., E]; weight, bias: [E] or undefined (no affine). -> [..., E]
Var layer_norm(const Var& x, const Var& weight, const Var& bias, double eps = 1e-5);

}  // namespace attn::ag
