// Transformer encoder and decoder layers, torch.nn.TransformerEncoderLayer /
// TransformerDecoderLayer (Vaswani et al. 2017, §3.1), post-norm (torch's default) or pre-norm
// (norm_first), relu or gelu (erf) feed-forward, dropout; batch_first by default.
//
// Encoder parameters: "self_attn.*", "linear1.*", "linear2.*", "norm1.*", "norm2.*".
// Decoder adds "multihead_attn.*" (cross-attention) and "norm3.*".
#pragma once

#include <memory>

#include "attn/nn/dropout.h"
#include "attn/nn/layer_norm.h"
#include "attn/nn/linear.h"
#include "attn/nn/multihead_attention.h"

namespace attn::nn {

enum class Activation { relu, gelu };

struct TransformerLayerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  Activation activation = Activation::relu;
  double layer_norm_eps = 1e-5;
  bool batch_first = true;
  bool norm_first = false;
  int64_t num_kv_heads = 0;  // grouped-query self/cross attention (0: nhead)
};

class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(const TransformerLayerOptions& opts, Rng& rng);
  // src: [B, N, E] (batch_first). Masks as MultiheadAttention (src_mask = attn_mask).
  Var forward(const Var& src, const AttentionMasks& masks = {});

  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;
  TransformerLayerOptions opts;

 private:
  Var sa_block(const Var& x, const AttentionMasks& m);
  Var ff_block(const Var& x);
};

class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(const TransformerLayerOptions& opts, Rng& rng);
  // tgt: [B, Nt, E], memory: [B, Ns, E] (batch_first).
  Var forward(const Var& tgt, const Var& memory, const AttentionMasks& tgt_masks = {},
              const AttentionMasks& memory_masks = {});

  std::shared_ptr<MultiheadAttention> self_attn, multihead_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<LayerNorm> norm1, norm2, norm3;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2, dropout3;
  TransformerLayerOptions opts;

 private:
  Var ff_block(const Var& x);
};

}  // namespace attn::nn
