// The reference attention: plain scalar loops accumulating in double, written for clarity.
// The oracle every fast kernel is tested against; never optimised.
#pragma once

#include <cstdint>

#include "attn/attention/attention.h"
#include "attn/kernels/attention_problem.h"

namespace attn::ref {

// Score-function parameters beyond q and k.
struct ScoreParams {
  ScoreFn fn = ScoreFn::scaled_dot;
  const float* w = nullptr;   // general:  [D, Dk] contiguous
  const float* wq = nullptr;  // additive: [A, D] contiguous
  const float* wk = nullptr;  // additive: [A, Dk] contiguous
  const float* va = nullptr;  // additive: [A]
  int64_t A = 0;
  double temperature = 1.0;   // cosine (p.scale is ignored for cosine; the score is cos / temperature)
};

// out: strided per p.o_stride; lse: [B, Hq, Nq]; weights: [B, Hq, Nq, Nk] or null.
// Weights are the softmax probabilities after dropout (what multiplies v).
void attention_forward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                       const float* k, const float* v, float* out, float* lse, float* weights);

// Gradients of sum(dout * out). dout is [B, Hq, Nq, Dv] contiguous; dq, dk, dv are
// contiguous [B, Hq, Nq, D], [B, Hkv, Nk, Dk], [B, Hkv, Nk, Dv] and are overwritten.
// dw / dwq / dwk / dva: overwritten when the score function has them (else null).
// dbias: null, or [B, Hq, Nq, Nk] contiguous, overwritten with d(loss)/d(score after bias).
// dtemperature: null, or set (cosine).
void attention_backward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                        float* dwk, float* dva, float* dbias, double* dtemperature);

}  // namespace attn::ref
