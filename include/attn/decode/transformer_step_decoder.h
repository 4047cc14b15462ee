// StepDecoder for models::TransformerSeq2Seq, so greedy_search / beam_search decode
// Transformers and every Hypothesis carries an alignment: the cross-attention weights of
// one decoder layer, averaged over its heads.
//
// With use_cache (the default) the encoder runs once per batch, each decoder layer's
// cross-attention keys / values are projected once, and the self-attention keys / values of
// past positions are kept per layer and extended by one position per step, so a step costs
// O(T) rather than O(T²). use_cache = false recomputes the whole prefix every step (the
// reference the cache is tested against).
//
// start() switches the model to eval mode (no dropout); the caller switches it back.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/decode/step_decoder.h"
#include "attn/models/transformer_seq2seq.h"

namespace attn::decode {

struct TransformerStepDecoderOptions {
  int64_t alignment_layer = -1;  // decoder layer whose cross-attention is the alignment; -1 = last
  bool use_cache = true;
};

class TransformerStepDecoder : public StepDecoder {
 public:
  // Throws attn::Error when the model has no decoder layer or alignment_layer is outside
  // [-1, num_decoder_layers).
  explicit TransformerStepDecoder(models::TransformerSeq2Seq& model, const TransformerStepDecoderOptions& options = {});
  void start(const Tensor& src, const Tensor& src_lengths) override;
  void reorder(const Tensor& rows) override;
  // prev_tokens i32 [N] -> {log-probs f32 [N, V], alignment-layer cross-attention weights
  // averaged over heads f32 [N, S]}.
  std::pair<Tensor, Tensor> step(const Tensor& prev_tokens) override;

 private:
  models::TransformerSeq2Seq& model_;
  TransformerStepDecoderOptions options_;
  int64_t layer_;  // alignment layer, resolved
  models::EncoderState enc_;
  models::TransformerDecoderCache cache_;  // use_cache
  Tensor prefix_;                          // !use_cache: tokens fed so far, i32 [N, t]
};

}  // namespace attn::decode
