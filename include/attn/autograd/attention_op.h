// The attention function as one differentiable op: the forward calls attn::attention_forward
// and the backward attn::attention_backward (attention/attention.h), so every score function
// and mask of the public API is differentiable with respect to q, k, v, W (general),
// W_q, W_k, v_a (additive) and the additive bias.
//
//   q: [B, Hq, Nq, D]   k: [B, Hkv, Nk, Dk]   v: [B, Hkv, Nk, Dv]   -> out [B, Hq, Nq, Dv]
// (2-D and 3-D inputs as in the API). f32 runs the public API (fused kernel when it applies);
// f64 (gradient checks) runs the double-precision reference kernel with the same semantics.
#pragma once

#include "attn/attention/attention.h"
#include "attn/autograd/var.h"

namespace attn::ag {

// Differentiable extras; undefined Vars mean "absent" (see AttentionExtras).
struct AttentionInputs {
  Var w;               // general:  [D, Dk]
  Var wq;              // additive: [A, D]
  Var wk;              // additive: [A, Dk]
  Var va;              // additive: [A]
  Var bias;            // [B|1, Hq|1, Nq, Nk] or [Nq, Nk]; -inf hides a key
  Tensor key_lengths;  // [B] i32 (not differentiable)
};

struct AttentionResult {
  Var out;         // [B, Hq, Nq, Dv]
  Tensor weights;  // [B, Hq, Nq, Nk] when opts.need_weights (after dropout), else undefined
};

// The temperature of the cosine score is a constant here (no gradient).
AttentionResult attention(const Var& q, const Var& k, const Var& v, const AttentionInputs& extras,
                          const AttentionOptions& opts);

}  // namespace attn::ag
