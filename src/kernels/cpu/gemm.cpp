#include "attn/kernels/cpu/gemm.h"

#include <cblas.h>

#include <atomic>
#include <cstring>

#include "attn/core/error.h"
#include "attn/kernels/cpu/gemm_bf16.h"

namespace attn::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // BLAS leaves C untouched for K = 0 only when beta == 1; make C = beta * C explicit.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

namespace {
std::atomic<MatmulPrecision> g_precision{MatmulPrecision::f32};
}  // namespace

MatmulPrecision matmul_precision() { return g_precision.load(std::memory_order_relaxed); }

void set_matmul_precision(MatmulPrecision precision) {
  g_precision.store(precision, std::memory_order_relaxed);
}

const char* to_string(MatmulPrecision precision) {
  return precision == MatmulPrecision::bf16 ? "bf16" : "f32";
}

MatmulPrecision parse_matmul_precision(const char* text, const char* what) {
  if (std::strcmp(text, "f32") == 0) return MatmulPrecision::f32;
  if (std::strcmp(text, "bf16") == 0) return MatmulPrecision::bf16;
  throw Error(std::string(what) + ": unknown matmul precision '" + text + "' (expected f32 or bf16)");
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  if (matmul_precision() == MatmulPrecision::bf16)
    bf16_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace attn::cpu
