// Transformer encoder–decoder (Vaswani et al. 2017) for sequence-to-sequence tasks, laid out
// like torch.nn.Transformer inside the PyTorch G2P peer script (G2PTransformer), so that its
// state_dict names are torch's and checkpoints can be read by either side:
//
//   src_emb.weight [Vs, E]            tgt_emb.weight [Vt, E]          (buffer pe.pe [max_len, E])
//   tf.encoder.layers.<i>.*           tf.encoder.norm.{weight,bias}
//   tf.decoder.layers.<i>.*           tf.decoder.norm.{weight,bias}
//   out.weight [Vt, E], out.bias [Vt]
//
// Embeddings ~ N(0, E^-1/2) with the padding row zero, scaled by sqrt(E) (§3.4), plus fixed
// sinusoidal positions (§3.5), then dropout. As torch.nn.Transformer, the encoder and the
// decoder each end with a LayerNorm (also with post-norm layers).
//
// As a models::Seq2SeqModel it trains with train::train_seq2seq (begin_step makes every
// dropout stream a function of (seed, step)); decode/transformer_step_decoder.h drives it in
// greedy and beam search with a KV cache (start_decoding / decode_next).
//
// Masks: padding (id pad_id) is hidden from every attention through the attention op's
// per-sequence key lengths when each row is right-padded (the fused kernels serve that),
// and through a key padding mask otherwise; the decoder's self-attention is causal.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "attn/models/seq2seq_model.h"
#include "attn/nn/dropout.h"
#include "attn/nn/embedding.h"
#include "attn/nn/layer_norm.h"
#include "attn/nn/linear.h"
#include "attn/nn/positional_encoding.h"
#include "attn/nn/transformer_layer.h"

namespace attn::models {

using ag::Var;

struct TransformerSeq2SeqOptions {
  int64_t src_vocab = 0;
  int64_t tgt_vocab = 0;
  int64_t d_model = 256;
  int64_t nhead = 4;
  int64_t num_encoder_layers = 3;
  int64_t num_decoder_layers = 3;
  int64_t dim_feedforward = 1024;
  double dropout = 0.1;
  nn::Activation activation = nn::Activation::relu;
  bool norm_first = true;  // pre-norm (the G2P script's default); false: torch's post-norm
  int64_t max_len = 256;   // longest source or target sequence
  int32_t pad_id = 0;
  int64_t num_kv_heads = 0;  // grouped-query attention (0: nhead); must divide nhead

  // {"model": "transformer", "d_model": 256, "activation": "relu", ...}
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; throws attn::Error naming the field for unknown
  // names (activation, model), wrong JSON types or bad sizes.
  static TransformerSeq2SeqOptions from_json(const nlohmann::json& j);
  // Throws attn::Error naming the field.
  void validate() const;
};

// Encoder output with the source padding it came from (needed by every decoder call).
struct EncoderState {
  Var memory;            // [B, S, E]
  nn::AttentionMasks mask;  // key masks over the S source positions
};

// torch.nn.TransformerEncoder: "layers.<i>.*", "norm.*".
class TransformerEncoderStack : public nn::Module {
 public:
  TransformerEncoderStack(const nn::TransformerLayerOptions& opts, int64_t num_layers, Rng& rng);
  // x: [B, S, E] -> [B, S, E]
  Var forward(const Var& x, const nn::AttentionMasks& masks);
  std::vector<std::shared_ptr<nn::TransformerEncoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> norm;
};

// torch.nn.TransformerDecoder: "layers.<i>.*", "norm.*".
class TransformerDecoderStack : public nn::Module {
 public:
  TransformerDecoderStack(const nn::TransformerLayerOptions& opts, int64_t num_layers, Rng& rng);
  // y: [B, T, E], memory: [B, S, E] -> [B, T, E]; cross_weights (optional): per layer
  // f32 [B, H, T, S].
  Var forward(const Var& y, const Var& memory, const nn::AttentionMasks& tgt_masks,
              const nn::AttentionMasks& memory_masks, std::vector<Tensor>* cross_weights = nullptr);
  std::vector<std::shared_ptr<nn::TransformerDecoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> norm;
};

// torch.nn.Transformer's parameter holder: "encoder.*", "decoder.*".
class TransformerCore : public nn::Module {
 public:
  TransformerCore(const nn::TransformerLayerOptions& opts, int64_t num_encoder_layers,
                  int64_t num_decoder_layers, Rng& rng);
  std::shared_ptr<TransformerEncoderStack> encoder;
  std::shared_ptr<TransformerDecoderStack> decoder;
};

// Incremental decoding state: one cache per decoder layer, and the number of target
// positions decoded so far.
struct TransformerDecoderCache {
  std::vector<nn::DecoderLayerCache> layers;
  int64_t length = 0;
  int64_t rows() const { return layers.empty() ? 0 : layers[0].cross_attn.rows(); }
  // Row r becomes old row rows[r] (i32 [M]; beam search).
  void reorder(const Tensor& rows);
};

class TransformerSeq2Seq : public Seq2SeqModel {
 public:
  // Throws attn::Error when a vocabulary is empty, pad_id lies outside it, or the sizes do
  // not fit (d_model a multiple of nhead, ...).
  TransformerSeq2Seq(const TransformerSeq2SeqOptions& opts, Rng& rng);

  // Seq2SeqModel: src [B, S] i32, src_lengths [B] i32 (each in [1, S]; positions beyond are
  // hidden), tgt_in [B, T] i32 -> logits [B, T, tgt_vocab]; `attention` is left undefined.
  Seq2SeqOutput forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in) override;
  // Sets the counter of every dropout stream (embeddings, each layer's dropouts, attention
  // dropout) to step << 32: masks depend on (seed, step) only, so a resumed run is exact.
  void begin_step(int64_t step) override;
  nlohmann::json config_json() const override { return opts.to_json(); }

  // src: [B, S] i32, tgt_in: [B, T] i32 (decoder input, starting with BOS)
  //   -> logits [B, T, tgt_vocab]. Decoder self-attention is causal; source padding taken
  //   from pad_id.
  Var forward(const Tensor& src, const Tensor& tgt_in);

  // src: [B, S] i32 -> memory [B, S, E] and its padding masks (from pad_id).
  EncoderState encode(const Tensor& src);
  // The same with the source lengths given: src_lengths [B] i32, each in [1, S].
  EncoderState encode(const Tensor& src, const Tensor& src_lengths);
  // tgt_in: [B, T] i32 -> logits [B, T, tgt_vocab] for every target position.
  // hide_target_padding: also hide pad_id target keys (training; the causal mask already
  // hides trailing padding from real positions). cross_weights (optional): per decoder
  // layer, f32 [B, H, T, S].
  Var decode(const Tensor& tgt_in, const EncoderState& enc, std::vector<Tensor>* cross_weights = nullptr,
             bool hide_target_padding = true);
  // The logits of the next token after the prefix tgt_in [B, T]: [B, tgt_vocab]
  // (recomputes the prefix: no KV cache).
  Var decode_step(const Tensor& tgt_in, const EncoderState& enc);

  // Per decoder layer, the cross-attention weights f32 [B, H, T, S] of a teacher-forced
  // pass over tgt_in (for heatmaps): eval mode (restored after), no grad.
  std::vector<Tensor> cross_attention_weights(const Tensor& src, const Tensor& tgt_in);

  // KV-cached incremental decoding (no grad; call in eval mode). start_decoding projects the
  // cross-attention keys / values of every decoder layer once; enc.mask must hold key
  // lengths or nothing. decode_next feeds one token per row, prev_tokens i32 [N], at
  // position cache.length, and returns the next token's logits [N, tgt_vocab] — equal to
  // decode_step over the whole prefix (without target padding masks). cross_weights
  // (optional): per decoder layer, f32 [N, H, S].
  TransformerDecoderCache start_decoding(const EncoderState& enc);
  Var decode_next(const Tensor& prev_tokens, TransformerDecoderCache& cache,
                  std::vector<Tensor>* cross_weights = nullptr);

  // Key masks hiding the pad_id positions of ids [B, N]: key lengths when every row is
  // right-padded (and at least one token of each row is real), else a key padding mask.
  nn::AttentionMasks padding_masks(const Tensor& ids) const;

  std::shared_ptr<nn::Embedding> src_emb, tgt_emb;
  std::shared_ptr<nn::SinusoidalPositionalEncoding> pe;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<TransformerCore> tf;
  std::shared_ptr<nn::Linear> out;
  TransformerSeq2SeqOptions opts;

 private:
  Var embed(const nn::Embedding& emb, const Tensor& ids, int64_t offset = 0);
};

}  // namespace attn::models
