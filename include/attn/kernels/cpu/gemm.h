// Single-precision GEMM through the BLAS (OpenBLAS, OpenMP build): the one matrix product
// every layer above uses.
#pragma once

#include <cstdint>

namespace attn::cpu {

// C[M, N] = alpha * op(A) op(B) + beta * C, row-major.
// op(A) is [M, K]: A is [M, K] with row stride lda, or, when trans_a, [K, M] with row stride lda.
// op(B) is [K, N]: B is [K, N] with row stride ldb, or, when trans_b, [N, K] with row stride ldb.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

}  // namespace attn::cpu
