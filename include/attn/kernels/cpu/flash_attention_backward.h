// Fused CPU attention backward, FlashAttention-2 style (Dao 2023, Algorithm 2): the Nq × Nk
// score matrix is never stored; per key block the scores are recomputed from q, k and the
// forward's log-sum-exp.
#pragma once

#include <cstdint>

#include "attn/kernels/attention_problem.h"

namespace attn::cpu {

// Whether flash_attention_backward handles this problem: the dot / scaled_dot score
// (p.scale multiplies q·k) with Dk == D; cosine_attention_backward (below) runs on it too.
// general_attention_backward (below) needs only p.Hq % p.Hkv == 0; additive goes to
// additive_attention.h.
bool flash_attention_backward_supports(const kernels::AttentionProblem& p);

// Gradients of sum(dout * out) for out = softmax(mask(q kᵀ · scale + bias)) v (with dropout
// as in attn::dropout_keep), every mask of AttentionProblem and grouped-query heads.
//
//   q: [B, Hq, Nq, D] (p.q_stride)   k: [B, Hkv, Nk, D] (p.k_stride)   v: [B, Hkv, Nk, Dv] (p.v_stride)
//   out: [B, Hq, Nq, Dv] (p.o_stride)    lse: [B, Hq, Nq] contiguous (the forward's; -inf rows
//   contribute nothing)    dout: [B, Hq, Nq, Dv] contiguous
//   dq: [B, Hq, Nq, D], dk: [B, Hkv, Nk, D], dv: [B, Hkv, Nk, Dv], contiguous, overwritten.
//   dbias: null, or [B, Hq, Nq, Nk] contiguous, overwritten with d(loss)/d(score after bias)
//   (= dS; zero where hidden) — materialised only because the caller asked for it.
//
// Per key block (parallel over batch × kv head × groups of up to 4 key blocks, which share
// each query tile) with D_i = rowsum(dO_i ∘ O_i):
//   S = Q Kᵀ·scale + bias, P = exp(S − lse), dV += Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − D_i),
//   dK += dSᵀ Q·scale, dQ += dS K·scale.
// Rows with |lse| ≥ 128 (a nearly saturated softmax, logits up to ±1e30) cannot rebuild P from
// an f32 lse: its rounding swallows log l, and the forward's f32 scores, rounded otherwise,
// need not match these to O(1). A pre-pass over the keys gives such rows their max m and sum l
// from this kernel's own scores, and P = exp(S − m) / l (cost: one more Q Kᵀ for their blocks).
// dK and dV of a kv head sum over its query heads. Keys past a batch's key length are never
// computed (their dK, dV are 0), and score tiles are as wide as a block's remaining keys
// (rounded up to 16), so short padded sequences do not pay for 64-key tiles.
// When one work unit holds every key block of its (batch, kv head) — Nk ≤ 64 × the unit's
// blocks, as in training batches of short sentences — each dq row has a single writer and is
// stored directly: the result is then the same at every thread count. Otherwise dQ is
// accumulated into one buffer per thread (work is assigned statically) and the buffers are
// summed in thread order, so the result is deterministic for a fixed thread count.
// Extra memory: (threads − 1) × |dq| (none in the direct case) plus B·Hq·Nq floats plus
// per-thread tiles.
void flash_attention_backward(const kernels::AttentionProblem& p, const float* q, const float* k,
                              const float* v, const float* out, const float* lse, const float* dout,
                              float* dq, float* dk, float* dv, float* dbias = nullptr);

// Backward of the cosine score s = cos(q_i, k_j) / temperature (p.scale ignored), buffers as
// above (q, k strided): q̂ = q/|q|, k̂ = k/|k| (a zero row stays 0: its score is the constant
// 0 and its gradient 0, as in the reference), the dot backward above on q̂, k̂ with scale
// 1/temperature, then dq = (dq̂ − q̂ (q̂·dq̂)) / |q| and likewise dk. dtemperature (may be null)
// gets d(loss)/d(temperature) = −(1/T) Σ_i q̂_i·dq̂_i. Extra memory: q̂ and k̂ (f32) besides
// the dot backward's.
void cosine_attention_backward(const kernels::AttentionProblem& p, double temperature,
                               const float* q, const float* k, const float* v, const float* out,
                               const float* lse, const float* dout, float* dq, float* dk, float* dv,
                               float* dbias, double* dtemperature);

// Backward of the `general` score s = qᵀ W k · p.scale (Luong et al. 2015), buffers as above
// except k: [B, Hkv, Nk, Dk] (p.k_stride), dk: [B, Hkv, Nk, Dk]; w: [D, Dk] contiguous;
// dw: [D, Dk], overwritten. As the forward (flash_attention_forward_general): q' = q W
// (project_queries, bit-identical to the forward's), the dot backward above on (q', k, v,
// lse) with D = Dk, then dq = dq' Wᵀ and dw = qᵀ dq' (two sgemm calls). Requires
// p.Hq % p.Hkv == 0. Extra memory: q' and dq' (f32, [B, Hq, Nq, Dk] each), a dense copy of q
// when q is strided, besides the dot backward's.
void general_attention_backward(const kernels::AttentionProblem& p, const float* w,
                                const float* q, const float* k, const float* v, const float* out,
                                const float* lse, const float* dout, float* dq, float* dk,
                                float* dv, float* dw, float* dbias);

}  // namespace attn::cpu
