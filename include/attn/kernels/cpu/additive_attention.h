// Blocked additive (Bahdanau et al. 2015, eq. 6) attention on the CPU, forward and backward:
//   s_ij = scale · vₐᵀ tanh(W_q q_i + W_k k_j) + bias_ij,  out_i = Σ_j softmax_j(s_i)_j v_j.
// The projections run first through the BLAS (Qp = q W_qᵀ [Nq, A], Kp = k W_kᵀ [Nk, A]); the
// Nq × Nk × A tanh terms are then computed tile by tile in cache and never stored, with an
// online softmax in the forward (Milakov & Gimelshein 2018) and recomputation from lse in the
// backward. Every mask of AttentionProblem, grouped-query heads and dropout as the reference.
#pragma once

#include <cstdint>

#include "attn/kernels/attention_problem.h"

namespace attn::cpu {

// The additive score's parameters: wq [A, D], wk [A, Dk], va [A], contiguous.
struct AdditiveWeights {
  const float* wq = nullptr;
  const float* wk = nullptr;
  const float* va = nullptr;
  int64_t A = 0;
};

//   q: [B, Hq, Nq, D] (p.q_stride)   k: [B, Hkv, Nk, Dk] (p.k_stride)   v: [B, Hkv, Nk, Dv] (p.v_stride)
//   out: [B, Hq, Nq, Dv] (p.o_stride)   lse: [B, Hq, Nq] contiguous (-inf for rows with no
//   visible key, whose out is 0).
// Extra memory: Qp and Kpᵀ (B·(Hq·Nq + Hkv·Nk)·A floats) plus per-thread tiles.
void additive_attention_forward(const kernels::AttentionProblem& p, const AdditiveWeights& w,
                                const float* q, const float* k, const float* v, float* out,
                                float* lse);

// Gradients of sum(dout * out), differentiating the forward above with the forward's out and
// lse; dout: [B, Hq, Nq, Dv] contiguous. Overwrites dq [B, Hq, Nq, D], dk [B, Hkv, Nk, Dk],
// dv [B, Hkv, Nk, Dv] (contiguous), dwq [A, D], dwk [A, Dk], dva [A]; dbias, when not null,
// [B, Hq, Nq, Nk] contiguous with d(loss)/d(score after bias) (zero where hidden). With
// dS = P ∘ (dP − rowsum(dO ∘ O)) and t_ija = tanh(Qp_ia + Kp_ja):
//   dva_a = scale Σ_ij dS_ij t_ija,   dX_ija = scale dS_ij va_a (1 − t_ija²),
//   dQp_ia = Σ_j dX_ija,   dKp_ja = Σ_i dX_ija,   dq = dQp W_q,  dW_q = Σ dQpᵀ q  (same for k).
// Rows with |lse| ≥ 128 (a nearly saturated softmax) take their max m and sum l from a
// pre-pass over this kernel's own scores and use P = exp(s − m) / l, as the flash backward
// (flash_attention_backward.h): an f32 lse loses log l there.
// dQp is accumulated per thread and summed in thread order: deterministic for a thread count.
void additive_attention_backward(const kernels::AttentionProblem& p, const AdditiveWeights& w,
                                 const float* q, const float* k, const float* v, const float* out,
                                 const float* lse, const float* dout, float* dq, float* dk,
                                 float* dv, float* dwq, float* dwk, float* dva,
                                 float* dbias = nullptr);

}  // namespace attn::cpu
