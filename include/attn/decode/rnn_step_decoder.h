// StepDecoder for models::Seq2SeqRNN: encodes once, then runs the decoder step by step.
// start() switches the model to eval mode (no dropout); the caller switches it back.
#pragma once

#include "attn/decode/step_decoder.h"
#include "attn/models/seq2seq_rnn.h"

namespace attn::decode {

class RnnStepDecoder : public StepDecoder {
 public:
  explicit RnnStepDecoder(models::Seq2SeqRNN& model) : model_(model) {}
  void start(const Tensor& src, const Tensor& src_lengths) override;
  void reorder(const Tensor& rows) override;
  std::pair<Tensor, Tensor> step(const Tensor& prev_tokens) override;

 private:
  models::Seq2SeqRNN& model_;
  models::AttentionMemory memory_;
  models::RnnDecoderState state_;
};

}  // namespace attn::decode
