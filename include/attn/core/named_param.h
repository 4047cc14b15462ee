// A named trainable tensor and its gradient: what modules hand to optimizers and
// checkpoints. `value` and `grad` share storage with the module's own tensors (Tensor copies
// are aliases), so an optimizer updates the module in place.
#pragma once

#include <string>
#include <vector>

#include "attn/core/tensor.h"

namespace attn {

struct NamedParam {
  std::string name;  // PyTorch state_dict name, e.g. "encoder.layers.0.self_attn.in_proj_weight"
  Tensor value;      // f32
  Tensor grad;       // same shape as value; may be undefined before the first backward
};

using NamedParams = std::vector<NamedParam>;

}  // namespace attn
