// Multiplicative / concat attention (Luong, Pham & Manning 2015, §3.1, eq. 8):
//   dot      score(h_t, h_s) = h_tᵀ h_s
//   general  score = h_tᵀ W_a h_s           "attn.weight" [Dq, Dk]
//   concat   score = v_aᵀ tanh(W_a [h_t; h_s])  "attn.weight" [A, Dq + Dk], "v.weight" [1, A]
// Each is one call of the attention op (dot, general and additive score functions). The
// attentional hidden state h̃_t = tanh(W_c [c_t; h_t]) belongs to the model.
#pragma once

#include <memory>

#include "attn/nn/bahdanau_attention.h"
#include "attn/nn/linear.h"

namespace attn::nn {

enum class LuongScore { dot, general, concat };

class LuongAttention : public Module {
 public:
  // attn_dim is used by concat only.
  LuongAttention(LuongScore score, int64_t query_dim, int64_t key_dim, Rng& rng, int64_t attn_dim = 0);
  // As BahdanauAttention::forward.
  AttentionContext forward(const Var& query, const Var& keys, const Var& values = Var(),
                           const Tensor& key_lengths = Tensor());
  LuongScore score;
  std::shared_ptr<Linear> attn, v;
};

}  // namespace attn::nn
