// Inverted dropout with the counter-based RNG (core/rng.h): element i is kept when
// counter_uniform(seed, offset + i) >= p and then scaled by 1 / (1 - p). The mask is a pure
// function of (seed, offset, i), so a step can be replayed exactly.
#pragma once

#include <cstdint>

#include "attn/autograd/var.h"

namespace attn::ag {

// p in [0, 1). p == 0 returns a unchanged (no node).
Var dropout(const Var& a, double p, uint64_t seed, uint64_t offset = 0);

// residual + dropout(x, p, seed, offset) in one pass (the residual connection of a Transformer
// block); the backward hands dout to the residual without a copy when it can. Same mask and
// same floats as the composition. Shapes must be equal. p == 0 gives residual + x.
Var dropout_add(const Var& residual, const Var& x, double p, uint64_t seed, uint64_t offset = 0);

// dropout(relu(x), p, seed, offset) in one pass (the feed-forward block), keeping only the
// output for the backward (no mask, no ReLU output). Same mask and same floats as the
// composition. p == 0 gives relu(x).
Var relu_dropout(const Var& x, double p, uint64_t seed, uint64_t offset = 0);

}  // namespace attn::ag
