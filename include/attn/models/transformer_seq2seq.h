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
// Masks: padding (id pad_id) is hidden from every attention through the attention op's
// per-sequence key lengths when each row is right-padded (the fused kernels serve that),
// and through a key padding mask otherwise; the decoder's self-attention is causal.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

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
  // y: [B, T, E], memory: [B, S, E] -> [B, T, E]
  Var forward(const Var& y, const Var& memory, const nn::AttentionMasks& tgt_masks,
              const nn::AttentionMasks& memory_masks);
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

class TransformerSeq2Seq : public nn::Module {
 public:
  // Throws attn::Error when a vocabulary is empty, pad_id lies outside it, or the sizes do
  // not fit (d_model a multiple of nhead, ...).
  TransformerSeq2Seq(const TransformerSeq2SeqOptions& opts, Rng& rng);

  // src: [B, S] i32, tgt_in: [B, T] i32 (decoder input, starting with BOS)
  //   -> logits [B, T, tgt_vocab]. Decoder self-attention is causal.
  Var forward(const Tensor& src, const Tensor& tgt_in);

  // src: [B, S] i32 -> memory [B, S, E] and its padding masks.
  EncoderState encode(const Tensor& src);
  // tgt_in: [B, T] i32 -> logits [B, T, tgt_vocab] for every target position.
  Var decode(const Tensor& tgt_in, const EncoderState& enc);
  // The logits of the next token after the prefix tgt_in [B, T]: [B, tgt_vocab]
  // (recomputes the prefix: no KV cache).
  Var decode_step(const Tensor& tgt_in, const EncoderState& enc);

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
  Var embed(const nn::Embedding& emb, const Tensor& ids);
};

}  // namespace attn::models
