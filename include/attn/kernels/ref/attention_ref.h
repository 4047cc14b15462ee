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

// Double-precision twin of ScoreParams, for gradient checks run entirely in double.
struct ScoreParams64 {
  ScoreFn fn = ScoreFn::scaled_dot;
  const double* w = nullptr;   // general:  [D, Dk] contiguous
  const double* wq = nullptr;  // additive: [A, D] contiguous
  const double* wk = nullptr;  // additive: [A, Dk] contiguous
  const double* va = nullptr;  // additive: [A]
  int64_t A = 0;
  double temperature = 1.0;    // cosine
  // When set, used instead of p.bias (same layout, p.bias_stride) so that the bias, too, can
  // be perturbed in double by a finite-difference check.
  const double* bias = nullptr;
};

// Score of key j for query i (the "score after bias" that dbias differentiates):
//   s_ij = raw(q_i, k_j) * p.scale + bias_ij     (dot, scaled_dot, general, additive)
//   s_ij = cos(q_i, k_j) / s.temperature + bias_ij (cosine; a zero-norm q_i or k_j gives 0)
// Hidden (masked, or bias -inf) keys are left out of the softmax. Rows with no visible key
// give out 0, lse -inf, weights 0 and zero gradients.
//
// out: strided per p.o_stride; lse: [B, Hq, Nq]; weights: [B, Hq, Nq, Nk] or null.
// Weights are the softmax probabilities after dropout (what multiplies v).
void attention_forward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                       const float* k, const float* v, float* out, float* lse, float* weights);

// Gradients of sum(dout * out). The reference recomputes the scores and the softmax in double
// and does not read out or lse (they are part of the interface the fused kernels share).
// dout is [B, Hq, Nq, Dv] contiguous; dq, dk, dv are contiguous [B, Hq, Nq, D],
// [B, Hkv, Nk, Dk], [B, Hkv, Nk, Dv] and are overwritten.
// dw / dwq / dwk / dva: overwritten when the score function has them (else null).
// dbias: null, or [B, Hq, Nq, Nk] contiguous, overwritten with d(loss)/d(score after bias).
// dtemperature: null, or set (cosine).
void attention_backward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                        float* dwk, float* dva, float* dbias, double* dtemperature);

// The same in double throughout (the kernel is one template over the element type).
void attention_forward(const kernels::AttentionProblem& p, const ScoreParams64& s, const double* q,
                       const double* k, const double* v, double* out, double* lse, double* weights);
void attention_backward(const kernels::AttentionProblem& p, const ScoreParams64& s, const double* q,
                        const double* k, const double* v, const double* out, const double* lse,
                        const double* dout, double* dq, double* dk, double* dv, double* dw,
                        double* dwq, double* dwk, double* dva, double* dbias, double* dtemperature);

}  // namespace attn::ref
