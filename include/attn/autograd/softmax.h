// softmax and log_softmax over one dim (numerically stable: the row maximum is subtracted).
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

Var softmax(const Var& a, int64_t dim = -1);
Var log_softmax(const Var& a, int64_t dim = -1);

}  // namespace attn::ag
