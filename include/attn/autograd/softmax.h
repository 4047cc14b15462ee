// softmax and log_softmax over one dim (numerically stable: the row maximum is subtracted).
// A softmax row that is entirely -inf (every key masked) gives zeros, not NaN, as the
// attention API does.
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

Var softmax(const Var& a, int64_t dim = -1);
Var log_softmax(const Var& a, int64_t dim = -1);

}  // namespace attn::ag
