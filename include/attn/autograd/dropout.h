// Inverted dropout with the counter-based RNG (core/rng.h): element i is kept when
// counter_uniform(seed, offset + i) >= p and then scaled by 1 / (1 - p). The mask is a pure
// function of (seed, offset, i), so a step can be replayed exactly.
#pragma once

#include <cstdint>

#include "attn/autograd/var.h"

namespace attn::ag {

// p in [0, 1). p == 0 returns a unchanged (no node).
Var dropout(const Var& a, double p, uint64_t seed, uint64_t offset = 0);

}  // namespace attn::ag
