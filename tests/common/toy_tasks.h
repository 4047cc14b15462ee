// A toy sequence-to-sequence task shared by the trainer, model and fault tests: reverse a
// sequence of 2..5 symbols out of 6 (ids 3..8; 0..2 are PAD / BOS / EOS).
#pragma once

#include <cstdint>
#include <vector>

#include "attn/autograd/ops.h"
#include "attn/core/rng.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"

namespace attn::testing {

inline std::vector<data::SeqPair> reversal_data(int64_t n, uint64_t seed) {
  Rng rng(seed, 0);
  std::vector<data::SeqPair> out;
  for (int64_t i = 0; i < n; ++i) {
    data::SeqPair p;
    const int64_t len = 2 + static_cast<int64_t>(rng.below(4));
    for (int64_t j = 0; j < len; ++j) p.src.push_back(3 + static_cast<int32_t>(rng.below(6)));
    p.tgt.assign(p.src.rbegin(), p.src.rend());
    out.push_back(p);
  }
  return out;
}

// Each pair's source with its target as the one reference.
inline train::EvalSet eval_set(const std::vector<data::SeqPair>& pairs) {
  train::EvalSet s;
  for (const auto& p : pairs) {
    s.sources.push_back(p.src);
    s.references.push_back({p.tgt});
  }
  return s;
}

// A small GRU + Bahdanau model for the task (vocabulary 9: the 6 symbols and the 3 specials).
inline models::Seq2SeqRNNConfig toy_config(double dropout = 0.0, int64_t encoder_layers = 1) {
  models::Seq2SeqRNNConfig c;
  c.encoder_layers = encoder_layers;
  c.src_vocab = 9;
  c.tgt_vocab = 9;
  c.embed_dim = 12;
  c.hidden_dim = 16;
  c.decoder_dim = 32;
  c.attn_dim = 16;
  c.dropout = dropout;
  return c;
}

// Greedy decoding of the model, as the trainer's evaluation calls it.
inline train::DecodeFn greedy_fn(models::Seq2SeqRNN& model) {
  return [&model](const std::vector<std::vector<int32_t>>& srcs) {
    data::Batch b = data::collate_sources(srcs);
    decode::RnnStepDecoder dec(model);
    decode::SearchOptions so;
    so.max_length = 8;
    std::vector<std::vector<int32_t>> out;
    for (auto& h : decode::greedy_search(dec, b.src, b.src_lengths, so)) out.push_back(h.tokens);
    return out;
  };
}

// Teacher-forced cross entropy (no smoothing) of the model on all pairs as one batch, eval mode.
inline double batch_loss(models::Seq2SeqRNN& model, const std::vector<data::SeqPair>& pairs) {
  ag::NoGradGuard g;
  model.eval();
  std::vector<int64_t> idx(pairs.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  data::Batch b = data::collate(pairs, idx);
  models::Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  const int64_t B = out.logits.size(0), T = out.logits.size(1), V = out.logits.size(2);
  return ag::cross_entropy(ag::reshape(out.logits, {B * T, V}), b.tgt_out.reshape({B * T}), 0).value().get({});
}

}  // namespace attn::testing
