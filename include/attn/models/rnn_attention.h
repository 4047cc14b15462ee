// One decoder step of attention for the RNN encoder–decoder, built from autograd ops (the
// keys' projection is computed once per source batch, not once per decoder step):
//   bahdanau      e_j = vᵀ tanh(W s + U h_j + b)            (Bahdanau et al. 2015, eq. 6 / A.1.2)
//   location      e_j = vᵀ tanh(W s + U h_j + V f_j + b),   f = F * α_prev
//                 (Chorowski et al. 2015, eqs. 8–9: F is a 1-D convolution with R filters of
//                 width K over the previous step's weights; V projects the R features)
//   luong-dot     e_j = sᵀ h_j                               (Luong et al. 2015, eq. 8)
//   luong-general e_j = sᵀ W_a h_j
//   luong-concat  e_j = vᵀ tanh(W_a [s; h_j])  (= vᵀ tanh(W s + U h_j), no bias)
// then α = softmax_j(e_j + mask_j) with mask_j = -inf at padded positions (weight exactly 0)
// and c = Σ_j α_j h_j.
//
// Parameters: "query_proj.weight" [A, Dq] (additive), "key_proj.weight" [A | Dq, Dk] (+ "bias"
// for bahdanau/location), "v.weight" [1, A] (additive), "location_conv.weight" [R, 1, K] and
// "location_proj.weight" [A, R] (location; the torch.nn.Conv1d layout, padding K / 2).
#pragma once

#include <memory>
#include <string>

#include "attn/nn/linear.h"

namespace attn::models {

using ag::Var;

enum class AttentionKind { bahdanau, luong_dot, luong_general, luong_concat, location };

// "bahdanau" | "luong-dot" | "luong-general" | "luong-concat" | "location".
std::string attention_name(AttentionKind kind);
// Throws attn::Error listing the accepted names.
AttentionKind parse_attention(const std::string& name);
// Whether the score is additive (bahdanau, luong-concat, location).
bool is_additive(AttentionKind kind);

// What a decoder needs of the encoder's output for every step of one batch.
struct AttentionMemory {
  Var values;    // [B, S, Dk]: the encoder states h_j
  Var keys;      // [B, S, A] (additive), [B, S, Dq] (general) or the values (dot)
  Var mask;      // [B, S] constant: 0 at real positions, -inf at padding
  Tensor lengths;  // i32 [B]
};

class RnnAttention : public nn::Module {
 public:
  // query_dim Dq = decoder state size, key_dim Dk = encoder output size, attn_dim A
  // (additive), location_filters R and location_kernel K (odd) for location.
  RnnAttention(AttentionKind kind, int64_t query_dim, int64_t key_dim, int64_t attn_dim, Rng& rng,
               int64_t location_filters = 8, int64_t location_kernel = 7);

  // values: [B, S, Dk], lengths: i32 [B] (each in [1, S]).
  AttentionMemory prepare(const Var& values, const Tensor& lengths) const;
  // query: [B, Dq]; prev_weights: [B, S] (location only; undefined = zeros).
  // Returns {weights [B, S], context [B, Dk]}.
  std::pair<Var, Var> forward(const AttentionMemory& memory, const Var& query, const Var& prev_weights = Var()) const;

  // Rows `rows` (i32 [N]) of a memory (for beam search).
  static AttentionMemory select(const AttentionMemory& memory, const Tensor& rows);

  AttentionKind kind;
  int64_t query_dim, key_dim, attn_dim, location_filters, location_kernel;
  std::shared_ptr<nn::Linear> query_proj, key_proj, v, location_proj;
  Var location_conv;  // [R, 1, K]
};

}  // namespace attn::models
