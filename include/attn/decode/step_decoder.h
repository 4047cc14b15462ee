// The interface greedy and beam search drive: a model that decodes a batch of sources one
// token at a time over "rows" (one row per source in greedy search, width rows per source in
// beam search) and can reorder its rows (beam search keeps the best continuations).
#pragma once

#include <utility>

#include "attn/core/tensor.h"

namespace attn::decode {

class StepDecoder {
 public:
  virtual ~StepDecoder() = default;
  // Encodes a batch: src i32 [B, S] (PAD = 0), src_lengths i32 [B]. Afterwards row b
  // decodes source b.
  virtual void start(const Tensor& src, const Tensor& src_lengths) = 0;
  // New row r continues old row rows[r] (rows: i32 [N], any length, repeats allowed).
  virtual void reorder(const Tensor& rows) = 0;
  // Feeds the previous token of every row (i32 [N]) and returns
  //   {log-probabilities of the next token [N, V] (f32), attention weights [N, S] (f32,
  //    undefined when the model has none)}.
  virtual std::pair<Tensor, Tensor> step(const Tensor& prev_tokens) = 0;
};

}  // namespace attn::decode
