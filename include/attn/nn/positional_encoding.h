// Positional encodings added to token embeddings [B, N, E] (batch first).
#pragma once

#include "attn/nn/module.h"

namespace attn::nn {

// Fixed sinusoids (Vaswani et al. 2017, §3.5):
//   pe[pos, 2i] = sin(pos / 10000^(2i/E)),  pe[pos, 2i+1] = cos(pos / 10000^(2i/E)).
// Buffer "pe" [max_len, E]; no parameters.
class SinusoidalPositionalEncoding : public Module {
 public:
  SinusoidalPositionalEncoding(int64_t dim, int64_t max_len = 5000);
  // x: [B, N, E] -> x + pe[offset : offset + N]   (offset: position of x's first step,
  // for incremental decoding)
  Var forward(const Var& x, int64_t offset = 0) const;
  Tensor pe;
  int64_t dim, max_len;
};

// Learned absolute positions: parameter "weight" [max_len, E] ~ N(0, 1) (an Embedding).
class LearnedPositionalEncoding : public Module {
 public:
  LearnedPositionalEncoding(int64_t dim, int64_t max_len, Rng& rng);
  Var forward(const Var& x, int64_t offset = 0) const;
  Var weight;
  int64_t dim, max_len;
};

}  // namespace attn::nn
