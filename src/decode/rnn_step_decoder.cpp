// StepDecoder over Seq2SeqRNN.
#include "attn/decode/rnn_step_decoder.h"

#include "attn/autograd/ops.h"

namespace attn::decode {

void RnnStepDecoder::start(const Tensor& src, const Tensor& src_lengths) {
  ag::NoGradGuard no_grad;
  model_.eval();
  models::RnnEncoding enc = model_.encode(src, src_lengths);
  state_ = model_.initial_state(enc);
  memory_ = enc.memory;
}

void RnnStepDecoder::reorder(const Tensor& rows) {
  ag::NoGradGuard no_grad;
  memory_ = models::RnnAttention::select(memory_, rows);
  state_ = models::Seq2SeqRNN::select(state_, rows);
}

std::pair<Tensor, Tensor> RnnStepDecoder::step(const Tensor& prev_tokens) {
  ag::NoGradGuard no_grad;
  models::RnnStepOutput r = model_.step(memory_, state_, prev_tokens);
  return {ag::log_softmax(r.logits, -1).value(), r.weights.value()};
}

}  // namespace attn::decode
