// Fused, tiled attention forward on the CPU (FlashAttention-2, Dao 2023, Algorithm 1):
// queries in row blocks, keys/values streamed in column blocks, online softmax (running row
// max and sum), the output accumulated in a cache-resident tile. The Nq x Nk score matrix is
// never materialised; extra memory is O(threads x block), independent of N.
//
//   q: [B, Hq, Nq, D]   k: [B, Hkv, Nk, D]   v: [B, Hkv, Nk, Dv]
//   out: [B, Hq, Nq, Dv] (strided per p.o_stride)   lse: [B, Hq, Nq] contiguous (natural log)
//
// Every mask of kernels::AttentionProblem is honoured (causal with query_offset, sliding
// window, key_lengths, additive strided / broadcast bias, dropout with attn::dropout_keep,
// grouped-query heads). A row with no visible key gives out = 0 and lse = -inf.
// Results are deterministic for a fixed thread count (attn::set_num_threads).
#pragma once

#include <cstdint>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/kernels/attention_problem.h"

namespace attn::cpu {

// Which similarity the fused kernel computes; the score is then multiplied by p.scale.
//   dot     q·k             (dot: p.scale = 1; scaled_dot: p.scale = its scale)
//   cosine  q·k / (|q||k|)  (p.scale = 1/temperature; a zero row gives score 0)
enum class FlashScore { dot, cosine };

// f32 forward. p.Dk must equal p.D. lse may be null.
void flash_attention_forward(const kernels::AttentionProblem& p, const float* q, const float* k,
                             const float* v, float* out, float* lse,
                             FlashScore score = FlashScore::dot);

// bf16 inputs (q, k, v as raw bf16 bits, same strides in elements), f32 accumulation, f32 out.
// Q·Kᵀ and P·V run on AMX tiles (tdpbf16ps) when the CPU and OS allow them, else on
// AVX-512-BF16 (vdpbf16ps); P is rounded to bf16 there. Otherwise q, k, v are widened to f32
// and the f32 kernel runs.
void flash_attention_forward_bf16(const kernels::AttentionProblem& p, const bf16* q,
                                  const bf16* k, const bf16* v, float* out, float* lse,
                                  FlashScore score = FlashScore::dot);

// The `general` score qᵀ W k: projects q' = q W with one sgemm (q' [B, Hq, Nq, Dk] contiguous,
// allocated here), then runs the dot kernel with p.D = p.Dk.  w: [D, Dk] contiguous.
void flash_attention_forward_general(const kernels::AttentionProblem& p, const float* q,
                                     const float* w, const float* k, const float* v, float* out,
                                     float* lse);
// q' = q W into q_proj [B, Hq, Nq, Dk] contiguous (the helper used above; also for weights).
void project_queries(const kernels::AttentionProblem& p, const float* q, const float* w,
                     float* q_proj);

// Softmax weights for the pictures, recomputed without a second attention implementation:
// weights = exp(score - m) / sum_j exp(score_j - m) (m the row max) with masks and dropout as
// in the forward (what multiplied v). The scores, m and the sum are recomputed in double for
// the rows asked, so the weights are f32 roundings of exact values even at logits of ±1e30
// (where exp(score - lse) would lose log(sum) in the rounding of lse); the forward's lse (may
// be null) marks the rows with no visible key. Only query rows [row_begin, row_end) of every (batch, head) are computed:
//   weights: [B, Hq, row_end - row_begin, Nk] contiguous.
// Pass row_begin = 0, row_end = p.Nq for the full [B, Hq, Nq, Nk] tensor. For `general`,
// pass the projected q' (project_queries) and p.D = p.Dk.
void attention_weights_from_lse(const kernels::AttentionProblem& p, const float* q,
                                const float* k, const float* lse, int64_t row_begin,
                                int64_t row_end, float* weights,
                                FlashScore score = FlashScore::dot);

// For tests: the Highway targets compiled in and supported by this CPU (bit values of
// hwy's HWY_* target constants), and a way to force the next calls onto one of them
// (0 = back to the best). Not thread-safe; call between kernel invocations only.
std::vector<int64_t> flash_supported_targets();
void flash_force_target(int64_t target);
const char* flash_target_name(int64_t target);
// Which tiles the bf16 forward uses: the best the CPU has (AMX tdpbf16ps, else AVX-512-BF16
// vdpbf16ps), AVX-512-BF16 only, or the f32 fallback (tests force each in turn).
enum class Bf16Path { best, avx512_bf16, f32 };
void flash_force_bf16_path(Bf16Path path);
// Name of the bf16 path the next call takes ("AMX-BF16", "AVX512-BF16" or "f32 fallback").
const char* flash_bf16_path_name();

// The vectorised exp2 used by the kernel, applied element-wise (for its accuracy test).
void flash_exp2(const float* x, float* y, int64_t n);

}  // namespace attn::cpu
