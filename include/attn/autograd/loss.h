// Losses.
#pragma once

#include <cstdint>

#include "attn/autograd/var.h"

namespace attn::ag {

// torch.nn.functional.cross_entropy(logits, targets, ignore_index, label_smoothing), mean
// reduction: logits [N, C], targets [N] (i32). Per target i with t_i != ignore_index:
//   l_i = -(1 - eps) log p_i[t_i] - (eps / C) sum_c log p_i[c]
// and the loss is sum l_i / (number of non-ignored targets). When every target is ignored
// the loss is 0 (PyTorch gives NaN) so that an all-padding batch cannot poison training.
Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index = -100,
                  double label_smoothing = 0.0);

}  // namespace attn::ag
