// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ 1.13.
#pragma once

#include <limits>

#include "attn/core/named_param.h"

namespace attn::optim {

// total = the p-norm of all defined gradients taken together (norm_type = infinity: the
// largest |g|); every gradient is then scaled by min(1, max_norm / (total + 1e-6)).
// Returns total (before clipping). Non-finite totals pass through like torch's default,
// unless error_if_nonfinite, which throws attn::Error and leaves the gradients untouched.
double clip_grad_norm(NamedParams& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

}  // namespace attn::optim
