// linear's forward with a bias: in f32 the bias fill + beta = 1 sgemm, under bf16 products the
// bf16 GEMM seeded with the bias (no fill pass). Both must give, bit for bit, the values of
// "fill every row with the bias, then C += x wᵀ" in that precision — the forward they replace —
// for linear and for the fused linear_relu_dropout (against its composition).
#include <gtest/gtest.h>

#include <cstring>

#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;

// out [rows, N] = bias rows, then += x [rows, K] wᵀ (w [N, K]) through cpu::gemm (the current
// precision): the definition of linear's forward.
Tensor fill_then_gemm(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t K = w.size(1), N = w.size(0), rows = x.numel() / K;
  Tensor out = Tensor::empty({rows, N});
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out.data<float>() + r * N, b.data<float>(), sizeof(float) * N);
  cpu::gemm(false, true, rows, N, K, 1.f, x.data<float>(), K, w.data<float>(), K, 1.f, out.data<float>(), N);
  return out;
}

void expect_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  EXPECT_EQ(0, std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())))
      << what << " differs from fill + gemm";
}

TEST(LinearBias, ForwardEqualsFillThenGemmInBothPrecisions) {
  for (cpu::MatmulPrecision prec : {cpu::MatmulPrecision::f32, cpu::MatmulPrecision::bf16}) {
    cpu::MatmulPrecisionScope scope(prec);
    SCOPED_TRACE(cpu::to_string(prec));
    // 70 rows x 45 outputs: full 32 x 32 blocks and edge blocks; K = 300 spans two bf16 chunks.
    for (int64_t K : {20, 300}) {
      Rng rng(static_cast<uint64_t>(K));
      const Tensor x = random_tensor({2, 35, K}, rng, -1, 1, DType::f32), w = random_tensor({45, K}, rng, -0.3, 0.3, DType::f32),
                   b = random_tensor({45}, rng, -0.5, 0.5, DType::f32);
      const Tensor want = fill_then_gemm(x, w, b).reshape({2, 35, 45});
      Var y = linear(Var(x, true), Var(w, true), Var(b, true));
      expect_bits(y.value(), want, "linear K=" + std::to_string(K));
      // The fused feed-forward layer starts from the same product.
      Var f = linear_relu_dropout(Var(x, true), Var(w, true), Var(b, true), 0.2, 5, 0);
      Var c = dropout(relu(linear(Var(x, true), Var(w, true), Var(b, true))), 0.2, 5, 0);
      expect_close(f.value(), c.value(), 0, 0, "linear_relu_dropout K=" + std::to_string(K));
    }
  }
}

// Under bf16 the product is really rounded (so the test above compares the bf16 path, not a
// silent f32 fallback) when the CPU has bf16 instructions.
TEST(LinearBias, Bf16ForwardDiffersFromF32WhenTheCpuHasBf16) {
  if (std::string(cpu::bf16_gemm_path_name()) == "f32 (sgemm)") GTEST_SKIP() << "no bf16 GEMM on this CPU";
  Rng rng(3);
  const Tensor x = random_tensor({40, 64}, rng, -1, 1, DType::f32), w = random_tensor({48, 64}, rng, -1, 1, DType::f32),
               b = random_tensor({48}, rng, -1, 1, DType::f32);
  Tensor y32 = linear(Var(x), Var(w), Var(b)).value();
  Tensor y16;
  {
    cpu::MatmulPrecisionScope scope(cpu::MatmulPrecision::bf16);
    y16 = linear(Var(x), Var(w), Var(b)).value();
  }
  ASSERT_EQ(y32.shape(), y16.shape());
  double max_diff = 0;
  for (int64_t i = 0; i < y32.numel(); ++i)
    max_diff = std::max(max_diff, std::abs(double(y32.data<float>()[i]) - y16.data<float>()[i]));
  EXPECT_GT(max_diff, 1e-4);
  EXPECT_LT(max_diff, 0.2);
}

}  // namespace
}  // namespace attn::ag
