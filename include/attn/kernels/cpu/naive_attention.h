// Materialised attention, the textbook formulation (what a framework user writes:
// softmax(q kᵀ · scale + mask) v): the Nq × Nk score matrix of one head at a time is stored
// and the products go through the BLAS. Kept as the baseline the fused kernels are
// benchmarked against; memory grows with Nq·Nk.
#pragma once

#include "attn/kernels/attention_problem.h"

namespace attn::cpu {

// dot / scaled_dot (p.scale) with the causal mask (and query offset) only: windows, key
// lengths, bias and dropout throw attn::Error. Layouts as flash_attention_backward's.
//   out: [B, Hq, Nq, Dv] (p.o_stride), lse: [B, Hq, Nq] contiguous.
void naive_attention_forward(const kernels::AttentionProblem& p, const float* q, const float* k,
                             const float* v, float* out, float* lse);

// dq, dk, dv contiguous and overwritten; dout [B, Hq, Nq, Dv] contiguous. Recomputes
// P = exp(S − lse) in full, then dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)),
// dQ = dS K · scale, dK = dSᵀ Q · scale.
void naive_attention_backward(const kernels::AttentionProblem& p, const float* q, const float* k,
                              const float* v, const float* out, const float* lse,
                              const float* dout, float* dq, float* dk, float* dv);

}  // namespace attn::cpu
