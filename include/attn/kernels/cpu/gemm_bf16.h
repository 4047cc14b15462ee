// Mixed-precision GEMM for training: bf16 products, f32 accumulation, f32 in and out.
#pragma once

#include <cstdint>

namespace attn::cpu {

// sgemm's contract (C[M, N] = alpha * op(A) op(B) + beta * C, row-major, any transposes,
// strides and sizes) with op(A) and op(B) rounded to bf16 (round to nearest even) and the
// products summed in f32: error ~ 2^-8 relative per input, like torch.autocast's bf16 matmul.
// Runs on AMX-BF16 tiles (tdpbf16ps) when the CPU and OS allow, else AVX-512-BF16
// (vdpbf16ps), else falls back to sgemm (plain f32). OpenMP over output blocks with
// attn::num_threads() threads; for a fixed path and thread count the result is deterministic
// (each output element is summed in one order whatever the threading).
void bf16_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// C[M, N] = op(A) op(B) + bias, bias [N] added to every row: the same values, bit for bit, as
// filling every row of C with bias and calling bf16_gemm with alpha = beta = 1, without the
// fill pass: the bias row seeds the f32 accumulators, and C's prior contents are never read.
// The fallback (no bf16 instructions) fills and calls sgemm, as bf16_gemm does.
void bf16_gemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                    int64_t lda, const float* B, int64_t ldb, const float* bias, float* C, int64_t ldc);

// Which implementation bf16_gemm runs, for tests and benchmarks: `best` (the default: AMX,
// else AVX-512-BF16, else f32), or the AVX-512-BF16 or f32 path forced.
enum class Bf16GemmPath { best, avx512_bf16, f32 };
void bf16_gemm_force_path(Bf16GemmPath path);
// Name of the implementation bf16_gemm runs now: "AMX-BF16", "AVX512-BF16" or "f32 (sgemm)".
const char* bf16_gemm_path_name();

}  // namespace attn::cpu
