// Length-bucketed batches of (source, target) id sequences, padded into i32 tensors, like
// make_train_batches() / collate() of the PyTorch G2P reference.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/core/rng.h"
#include "attn/core/tensor.h"

namespace attn::data {

// One training example: source ids and target ids, neither with <bos>/<eos>.
struct SeqPair {
  std::vector<int32_t> src;
  std::vector<int32_t> tgt;
};

// A padded batch (PAD = 0).
struct Batch {
  Tensor src;          // [B, S] i32, S = longest source
  Tensor tgt_in;       // [B, T] i32, T = longest target + 1: <bos> t1 .. tn, then pad
  Tensor tgt_out;      // [B, T] i32: t1 .. tn <eos>, then pad
  Tensor src_lengths;  // [B] i32
  Tensor tgt_lengths;  // [B] i32: target length + 1 (the <eos>/<bos> position)
  int64_t n_tokens = 0;         // sum of source lengths + sum of (target lengths + 1)
  std::vector<int64_t> indices;  // which examples, in batch order
};

// The reference's bucketing: shuffle the example order, cut it into chunks of
// 50 * batch_size, sort each chunk stably by (source length, target length), cut chunks into
// batches of batch_size (the last of a chunk may be smaller), then shuffle the batches.
// Shuffles are Fisher-Yates driven by `rng` (deterministic for a seed; not Python's stream).
// Returns example indices per batch; every example appears exactly once.
std::vector<std::vector<int64_t>> make_train_batches(const std::vector<SeqPair>& examples,
                                                     int64_t batch_size, Rng& rng);

// Batches in the given order without shuffling, sorted by source length when
// sort_by_length (for evaluation: like the reference's evaluate()).
std::vector<std::vector<int64_t>> make_eval_batches(const std::vector<SeqPair>& examples,
                                                    int64_t batch_size, bool sort_by_length);

// Pads the chosen examples. Throws attn::Error for an empty index list, an index out of
// range or an empty source.
Batch collate(const std::vector<SeqPair>& examples, const std::vector<int64_t>& indices);

// Sources only (for decoding): src [B, S] i32 and src_lengths [B] i32.
Batch collate_sources(const std::vector<std::vector<int32_t>>& sources);

// Fisher-Yates shuffle with `rng`.
void shuffle_indices(std::vector<int64_t>& v, Rng& rng);

}  // namespace attn::data
