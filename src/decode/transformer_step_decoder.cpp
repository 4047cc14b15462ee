// StepDecoder over TransformerSeq2Seq, with or without the KV cache.
#include "attn/decode/transformer_step_decoder.h"

#include <string>

#include "attn/autograd/ops.h"
#include "attn/core/error.h"

namespace attn::decode {

using ag::Var;

namespace {

// w: f32 [N, H, S] -> mean over heads [N, S].
Tensor head_average(const Tensor& w_in) {
  const Tensor w = w_in.contiguous();
  const int64_t N = w.size(0), H = w.size(1), S = w.size(2);
  Tensor avg = Tensor::zeros({N, S});
  const float* pw = w.data<float>();
  float* pa = avg.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < S; ++s) pa[n * S + s] += pw[(n * H + h) * S + s] / static_cast<float>(H);
  return avg;
}

// Rows of an i32 [N] or [N, t] tensor.
Tensor gather_i32(const Tensor& t, const Tensor& rows) {
  const Tensor c = t.contiguous(), r = rows.contiguous();
  const int64_t w = c.dim() == 2 ? c.size(1) : 1;
  Shape shape = c.shape();
  shape[0] = r.numel();
  Tensor g = Tensor::empty(shape, DType::i32);
  for (int64_t i = 0; i < r.numel(); ++i)
    for (int64_t j = 0; j < w; ++j) g.data<int32_t>()[i * w + j] = c.data<int32_t>()[r.data<int32_t>()[i] * w + j];
  return g;
}

// [N, t] and [N] i32 -> [N, t + 1].
Tensor append_column(const Tensor& prefix, const Tensor& col_in) {
  const Tensor col = col_in.contiguous();
  const int64_t N = col.size(0), t = prefix.defined() ? prefix.size(1) : 0;
  Tensor r = Tensor::empty({N, t + 1}, DType::i32);
  const Tensor p = prefix.defined() ? prefix.contiguous() : Tensor();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < t; ++j) r.data<int32_t>()[n * (t + 1) + j] = p.data<int32_t>()[n * t + j];
    r.data<int32_t>()[n * (t + 1) + t] = col.data<int32_t>()[n];
  }
  return r;
}

}  // namespace

TransformerStepDecoder::TransformerStepDecoder(models::TransformerSeq2Seq& model,
                                               const TransformerStepDecoderOptions& options)
    : model_(model), options_(options) {
  const int64_t L = model.opts.num_decoder_layers;
  ATTN_CHECK(L > 0, "TransformerStepDecoder: the model has no decoder layer");
  ATTN_CHECK(options.alignment_layer >= -1 && options.alignment_layer < L, "TransformerStepDecoder: alignment_layer ",
             options.alignment_layer, " outside [-1, ", L, ")");
  layer_ = options.alignment_layer < 0 ? L - 1 : options.alignment_layer;
}

void TransformerStepDecoder::start(const Tensor& src, const Tensor& src_lengths) {
  ag::NoGradGuard no_grad;
  model_.eval();
  enc_ = model_.encode(src, src_lengths);
  prefix_ = Tensor();
  cache_ = {};
  if (options_.use_cache) cache_ = model_.start_decoding(enc_);
}

void TransformerStepDecoder::reorder(const Tensor& rows) {
  ag::NoGradGuard no_grad;
  ATTN_CHECK(rows.defined() && rows.dtype() == DType::i32 && rows.dim() == 1,
             "TransformerStepDecoder.reorder: rows must be i32 [M], got ",
             rows.defined() ? shape_str(rows.shape()) : std::string("undefined"));
  const int64_t N = enc_.memory.size(0);
  const Tensor rc = rows.contiguous();
  for (int64_t i = 0; i < rc.numel(); ++i) {
    const int32_t r = rc.data<int32_t>()[i];
    ATTN_CHECK(r >= 0 && r < N, "TransformerStepDecoder.reorder: row ", r, " outside [0, ", N, ")");
  }
  if (options_.use_cache) {
    cache_.reorder(rows);
  } else if (prefix_.defined()) {
    prefix_ = gather_i32(prefix_, rows);
  }
  // The encoder state follows the rows too: the uncached path reads it every step, and the
  // sizes stay consistent for both.
  enc_.memory = ag::index_select(enc_.memory, rows);
  enc_.mask.key_lengths = gather_i32(enc_.mask.key_lengths, rows);
}

std::pair<Tensor, Tensor> TransformerStepDecoder::step(const Tensor& prev_tokens) {
  ag::NoGradGuard no_grad;
  ATTN_CHECK(prev_tokens.defined() && prev_tokens.dtype() == DType::i32 &&
                 prev_tokens.shape() == Shape{enc_.memory.size(0)},
             "TransformerStepDecoder.step: prev_tokens must be i32 [", enc_.memory.size(0), "], got ",
             prev_tokens.defined() ? shape_str(prev_tokens.shape()) : std::string("undefined"));
  const int64_t N = prev_tokens.size(0);
  std::vector<Tensor> w;
  Var logits;  // [N, V]
  Tensor weights;  // [N, H, S]
  if (options_.use_cache) {
    logits = model_.decode_next(prev_tokens, cache_, &w);
    weights = w[layer_];
  } else {
    prefix_ = append_column(prefix_, prev_tokens);
    // Every fed token is real (finished rows are fed <eos>): causal masking only.
    Var all = model_.decode(prefix_, enc_, &w, /*hide_target_padding=*/false);  // [N, t, V]
    const int64_t t = all.size(1);
    logits = ag::reshape(ag::slice(all, 1, t - 1, t), {N, all.size(2)});
    weights = w[layer_].select(2, t - 1);  // [N, H, S]
  }
  return {ag::log_softmax(logits, -1).value(), head_average(weights)};
}

}  // namespace attn::decode
