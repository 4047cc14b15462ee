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

// What one decoder layer keeps between incremental decoding steps.
struct DecoderLayerCache {
  KvCache self_attn;   // keys / values of every earlier target position
  KvCache cross_attn;  // the memory's keys / values, projected once
  // Row r becomes old row rows[r] (beam search).
  void reorder(const Tensor& rows) {
    self_attn.reorder(rows);
    cross_attn.reorder(rows);
  }
};

class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(const TransformerLayerOptions& opts, Rng& rng);
  // tgt: [B, Nt, E], memory: [B, Ns, E] (batch_first).
  // cross_weights (optional): the cross-attention weights per head, f32 [B, H, Nt, Ns].
  Var forward(const Var& tgt, const Var& memory, const AttentionMasks& tgt_masks = {},
              const AttentionMasks& memory_masks = {}, Tensor* cross_weights = nullptr);

  // Incremental decoding (no_grad; the layer should be in eval mode). start_cache projects
  // the cross-attention keys / values of memory [B, Ns, E] once; memory_key_lengths [B] i32
  // hides padded source positions (undefined: none).
  DecoderLayerCache start_cache(const Var& memory, const Tensor& memory_key_lengths = {});
  // The next target position tgt [N, 1, E] -> [N, 1, E]: equal to the last position of a
  // causal forward() over the whole prefix, at O(prefix) cost. Appends to cache.self_attn.
  // cross_weights (optional): f32 [N, H, 1, Ns].
  Var forward_step(const Var& tgt, DecoderLayerCache& cache, Tensor* cross_weights = nullptr);

  std::shared_ptr<MultiheadAttention> self_attn, multihead_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<LayerNorm> norm1, norm2, norm3;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2, dropout3;
  TransformerLayerOptions opts;

 private:
  Var ff_block(const Var& x);
  // The layer's residual structure (pre- or post-norm) around the two attention blocks.
  template <typename SelfAttn, typename CrossAttn>
  Var residual_blocks(const Var& tgt, const SelfAttn& sa, const CrossAttn& ca);
};

}  // namespace attn::nn
