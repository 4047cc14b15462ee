// Multi-head attention, torch.nn.MultiheadAttention, on the attention op (one fused call for
// all heads), with grouped-query heads as an extension.
//
// Parameters (torch state_dict names):
//   same q/k/v input dims: "in_proj_weight" [E + 2*Ekv, E]
//   kdim / vdim != E:      "q_proj_weight" [E, E], "k_proj_weight" [Ekv, kdim], "v_proj_weight" [Ekv, vdim]
//   "in_proj_bias" [E + 2*Ekv] (when bias), "out_proj.weight" [E, E], "out_proj.bias" [E]
// where Ekv = num_kv_heads * E / num_heads (= E without grouped-query heads, as torch).
// Init as torch: xavier-uniform projections, zero in_proj_bias and out_proj.bias.
//
// Masks follow torch's meaning. A mask Tensor of dtype i32 is boolean (non-zero = hidden, like
// torch's True); an f32 mask is added to the scores (-inf hides).
#pragma once

#include <memory>
#include <utility>

#include "attn/core/tensor.h"
#include "attn/nn/linear.h"
#include "attn/nn/module.h"

namespace attn::nn {

struct MultiheadAttentionOptions {
  double dropout = 0.0;        // on the attention weights, in training
  bool bias = true;
  int64_t kdim = 0;            // 0: embed_dim
  int64_t vdim = 0;            // 0: embed_dim
  int64_t num_kv_heads = 0;    // 0: num_heads; must divide num_heads
  bool batch_first = true;
};

struct AttentionMasks {
  Tensor key_padding_mask{};  // [B, Nk]: i32 (non-zero = padding) or f32 additive
  Tensor key_lengths{};     // [B] i32: keys j >= key_lengths[b] hidden (cheaper than a padding mask)
  Tensor attn_mask{};       // [Nq, Nk] or [B * num_heads, Nq, Nk]: i32 (non-zero = hidden) or f32 additive
  bool is_causal = false;   // hide keys j > i
};

// Projected keys and values of one attention layer, kept between the steps of incremental
// decoding (plain f32 Tensors, no autograd). Self-attention appends one position per step
// into spare capacity (doubled when full, so appending is amortised O(1) and the fused
// kernel reads the first `length` positions in place); cross-attention projects its memory
// once.
struct KvCache {
  Tensor k;            // [N, Hkv, capacity, Dh]; positions [0, length) hold keys
  Tensor v;            // [N, Hkv, capacity, Dh]
  Tensor key_lengths;  // [N] i32: keys j >= key_lengths[n] hidden (source padding); undefined = none
  int64_t length = 0;
  int64_t rows() const { return k.defined() ? k.size(0) : 0; }
  Tensor keys() const { return k.slice(2, 0, length); }    // [N, Hkv, length, Dh] view
  Tensor values() const { return v.slice(2, 0, length); }  // [N, Hkv, length, Dh] view
  // Row r becomes old row rows[r] (rows: i32 [M], repeats allowed; beam search). An empty
  // cache stays empty.
  void reorder(const Tensor& rows);
};

struct MhaOutput {
  Var out;         // [B, Nq, E] (batch_first) or [Nq, B, E]
  Tensor weights;  // need_weights: [B, Nq, Nk] averaged over heads, or [B, H, Nq, Nk]
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, Rng& rng, const MultiheadAttentionOptions& opts = {});
  // query [B, Nq, E], key [B, Nk, kdim], value [B, Nk, vdim] (batch_first).
  MhaOutput forward(const Var& query, const Var& key, const Var& value, const AttentionMasks& masks = {},
                    bool need_weights = false, bool average_attn_weights = true);

  // Incremental decoding (under no_grad; no dropout). Keys and values of a fixed memory
  // key [B, Nk, kdim], value [B, Nk, vdim] (batch_first), projected once (cross-attention);
  // key_lengths [B] i32 hides padded memory positions (undefined: none).
  KvCache project_kv(const Var& key, const Var& value, const Tensor& key_lengths = {});
  // One new query position, query [N, 1, E] (batch_first; [1, N, E] otherwise).
  // append = true (self-attention, needs kdim = vdim = E): the query's own key and value are
  // appended to `cache` first, so it sees every earlier position and itself — the last row
  // of a causal forward() over the whole prefix, at O(L) instead of O(L²) cost.
  // append = false (cross-attention): attends to `cache` as it is.
  MhaOutput forward_step(const Var& query, KvCache& cache, bool append, bool need_weights = false,
                         bool average_attn_weights = true);

  // The attention-dropout stream (Seq2SeqModel::begin_step sets its counter per step).
  DropoutStream& dropout_stream() { return stream_; }

  Var in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;
  std::shared_ptr<Linear> out_proj;
  int64_t embed_dim, num_heads, num_kv_heads, head_dim, kdim, vdim;
  MultiheadAttentionOptions opts;

 private:
  Var project_q(const Var& query);
  std::pair<Var, Var> project_kv_vars(const Var& key, const Var& value);
  // attention over projections q [B, Nq, Wq], k [B, Nk, Wk], v [B, Nk, Wv], the heads at
  // columns q_col / k_col / v_col (read in place) -> output projection.
  MhaOutput attend(const Var& q, int64_t q_col, const Var& k, int64_t k_col, const Var& v, int64_t v_col,
                   const AttentionMasks& masks, bool need_weights, bool average);
  DropoutStream stream_;
};

}  // namespace attn::nn
