// Reductions over axes (negative axes count from the end), with or without keepdim.
#pragma once

#include <vector>

#include "attn/autograd/var.h"

namespace attn::ag {

// Sum of every element: a scalar of shape [].
Var sum(const Var& a);
// Sum over `axes`; keepdim leaves them with size 1.
Var sum(const Var& a, const std::vector<int64_t>& axes, bool keepdim = false);
Var mean(const Var& a);
Var mean(const Var& a, const std::vector<int64_t>& axes, bool keepdim = false);
// Maximum over one axis; the gradient goes to the first maximal element.
Var max(const Var& a, int64_t axis, bool keepdim = false);

}  // namespace attn::ag
