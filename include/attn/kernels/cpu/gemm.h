// Single-precision GEMM through the BLAS (OpenBLAS, OpenMP build): the one matrix product
// every layer above uses; and the process-wide matmul precision that lets training run its
// matrix products in bf16 (see gemm_bf16.h).
#pragma once

#include <cstdint>

namespace attn::cpu {

// C[M, N] = alpha * op(A) op(B) + beta * C, row-major.
// op(A) is [M, K]: A is [M, K] with row stride lda, or, when trans_a, [K, M] with row stride lda.
// op(B) is [K, N]: B is [K, N] with row stride ldb, or, when trans_b, [N, K] with row stride ldb.
// Always f32 (the BLAS), whatever matmul_precision() says.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// Precision of the products that go through gemm() below (the autograd matmul, linear, conv
// and RNN-cell products): f32 (the default, the BLAS) or bf16 (inputs rounded to bf16 to the
// nearest even, f32 accumulation and output: bf16_gemm). The attention kernels call sgemm and
// are not affected.
enum class MatmulPrecision { f32, bf16 };

// The current precision (process-wide; one atomic read).
MatmulPrecision matmul_precision();
// Sets it for the whole process; prefer MatmulPrecisionScope.
void set_matmul_precision(MatmulPrecision precision);
// "f32" / "bf16".
const char* to_string(MatmulPrecision precision);
// Parses "f32" / "bf16"; anything else throws attn::Error naming `what` (e.g. "--matmul").
MatmulPrecision parse_matmul_precision(const char* text, const char* what);

// Sets the precision for its lifetime and restores the previous one (RAII). Process-wide, not
// per thread: meant to wrap a whole training run from the controlling thread.
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(MatmulPrecision precision)
      : previous_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~MatmulPrecisionScope() { set_matmul_precision(previous_); }
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision previous_;
};

// sgemm's contract, computed in matmul_precision(): sgemm when f32 (bit for bit), bf16_gemm
// when bf16.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc);

}  // namespace attn::cpu
