// Additive attention (Bahdanau, Cho & Bengio 2015, eq. 6 / appendix A.1.2):
//   e_ij = v_aᵀ tanh(W_a s_i + U_a h_j),  α_ij = softmax_j(e_ij),  c_i = Σ_j α_ij h_j
// as one call of the attention op with the additive score. Parameters (PyTorch seq2seq
// tutorial layout without biases — the op's additive score has none): "Wa.weight"
// [A, query_dim], "Ua.weight" [A, key_dim], "Va.weight" [1, A]; Linear init.
#pragma once

#include <memory>

#include "attn/nn/linear.h"

namespace attn::nn {

struct AttentionContext {
  Var context;     // [B, Nq, Dv] (or [B, Dv] for a 2-D query)
  Tensor weights;  // [B, Nq, Nk] (or [B, Nk]); always returned (for alignment pictures)
};

class BahdanauAttention : public Module {
 public:
  BahdanauAttention(int64_t query_dim, int64_t key_dim, int64_t attn_dim, Rng& rng);
  // query: [B, Nq, Dq] or [B, Dq] (one decoder step); keys: [B, Nk, Dk]; values: [B, Nk, Dv]
  // (undefined: the keys); key_lengths: i32 [B] or undefined.
  AttentionContext forward(const Var& query, const Var& keys, const Var& values = Var(),
                           const Tensor& key_lengths = Tensor());
  std::shared_ptr<Linear> Wa, Ua, Va;
};

}  // namespace attn::nn
