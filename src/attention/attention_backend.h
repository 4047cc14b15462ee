// Private to attention/: the one place that chooses which implementation runs a validated
// attention problem. Fused CPU kernels plug in here.
#pragma once

#include "attn/attention/attention.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn::detail {

// Buffers as in ref::attention_forward: q, k, v, out strided per p; lse [B, Hq, Nq];
// weights [B, Hq, Nq, Nk] or null.
void run_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                 const float* k, const float* v, float* out, float* lse, float* weights,
                 AttentionBackend backend);

// bf16 q, k, v (dot, scaled_dot or cosine) on the fused bf16 kernel; out and lse f32.
void run_forward_bf16(const kernels::AttentionProblem& p, const ref::ScoreParams& s,
                      const bf16* q, const bf16* k, const bf16* v, float* out, float* lse);

// Whether the fused cosine kernels can normalise every row of q and k: they scale by 1/|x|
// in f32, which overflows to inf for 0 < |x| < 1/FLT_MAX (rows of denormals). Strides per p.
bool cosine_norms_fit_f32(const kernels::AttentionProblem& p, const float* q, const float* k);

// Buffers as in ref::attention_backward (gradients contiguous and overwritten).
void run_backward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                  const float* k, const float* v, const float* out, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                  float* dwk, float* dva, float* dbias, double* dtemperature,
                  AttentionBackend backend);

}  // namespace attn::detail
