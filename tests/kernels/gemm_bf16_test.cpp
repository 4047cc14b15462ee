// bf16_gemm against a double-precision reference computed from the bf16-rounded inputs, so the
// only error left is f32 accumulation: |C - ref| <= 1e-5 * (sum |alpha a b| + |beta c|).
// Every transpose case, alpha / beta, odd sizes (tails in M, N and K), row strides wider than
// the rows (the gaps hold NaN: a read there would show), 1 and 2 threads, each path the CPU
// has (AMX-BF16, AVX512-BF16) forced in turn. And the precision switch: cpu::gemm in f32 mode
// is sgemm bit for bit, in bf16 mode bf16_gemm.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/core/error.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"

namespace attn::cpu {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// rows x cols values in [-1, 1) with row stride ld >= cols; the gap after each row is NaN.
std::vector<float> random_matrix(int64_t rows, int64_t cols, int64_t ld, uint64_t seed) {
  Rng rng(seed, 0);
  std::vector<float> m(static_cast<size_t>(rows * ld), kNan);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m[i * ld + j] = 2.f * rng.uniform() - 1.f;
  return m;
}

float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad;  // extra elements per row of A, B and C
};

std::string describe(const Case& c) {
  return "ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " pad=" + std::to_string(c.pad);
}

// Runs bf16_gemm on one case and checks every element (and that the gaps of C are untouched).
// Returns C for further comparisons.
std::vector<float> check_case(const Case& c, uint64_t seed) {
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  const std::vector<float> A = random_matrix(a_rows, a_cols, lda, seed);
  const std::vector<float> B = random_matrix(b_rows, b_cols, ldb, seed + 1);
  std::vector<float> C0 = random_matrix(c.M, c.N, ldc, seed + 2);
  if (c.beta == 0.f)  // beta = 0 ignores C, even NaN (BLAS semantics)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C0[i * ldc + j] = kNan;
  std::vector<float> C = C0;
  bf16_gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
  int bad = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = round_bf16(c.ta ? A[k * lda + i] : A[i * lda + k]);
        const double b = round_bf16(c.tb ? B[j * ldb + k] : B[k * ldb + j]);
        ref += c.alpha * a * b;
        mag += std::fabs(c.alpha * a * b);
      }
      if (c.beta != 0.f) {
        ref += c.beta * static_cast<double>(C0[i * ldc + j]);
        mag += std::fabs(c.beta * static_cast<double>(C0[i * ldc + j]));
      }
      const double got = C[i * ldc + j];
      if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-30) && ++bad <= 3)
        ADD_FAILURE() << describe(c) << ": C[" << i << "][" << j << "] = " << got << ", expected " << ref
                      << " (sum |terms| " << mag << ")";
    }
    for (int64_t j = c.N; j < ldc; ++j)
      if (!std::isnan(C[i * ldc + j]) && ++bad <= 3) ADD_FAILURE() << describe(c) << ": gap of C written";
  }
  return C;
}

// The paths this CPU runs, each forced in turn.
std::vector<Bf16GemmPath> available_paths() {
  std::vector<Bf16GemmPath> paths;
  bf16_gemm_force_path(Bf16GemmPath::best);
  if (std::string(bf16_gemm_path_name()) == "AMX-BF16") paths.push_back(Bf16GemmPath::best);
  bf16_gemm_force_path(Bf16GemmPath::avx512_bf16);
  if (std::string(bf16_gemm_path_name()) == "AVX512-BF16") paths.push_back(Bf16GemmPath::avx512_bf16);
  bf16_gemm_force_path(Bf16GemmPath::best);
  return paths;
}

class Bf16GemmPaths : public ::testing::Test {
 protected:
  void SetUp() override {
    paths_ = available_paths();
    if (paths_.empty()) GTEST_SKIP() << "no AMX-BF16 or AVX512-BF16 on this CPU";
    threads_ = num_threads();
  }
  void TearDown() override {
    bf16_gemm_force_path(Bf16GemmPath::best);
    set_num_threads(threads_);
  }
  std::vector<Bf16GemmPath> paths_;
  int threads_ = 1;
};

TEST_F(Bf16GemmPaths, OddSizesAllTransposesMatchRoundedReference) {
  const int64_t sizes[] = {1, 3, 17, 33, 64, 100, 257};
  for (Bf16GemmPath path : paths_) {
    bf16_gemm_force_path(path);
    SCOPED_TRACE(bf16_gemm_path_name());
    uint64_t seed = 1;
    for (int t = 0; t < 4; ++t)
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : sizes) {
            if (M * N * K > 40000 && !(M == 257 && N == 33 && K == 257)) continue;
            const float beta = (M + N + K) % 3 == 0 ? 0.f : (M + N + K) % 3 == 1 ? 1.f : -0.75f;
            // alpha = 1 with beta 0 or 1 takes the in-place path for full 32 x 32 blocks.
            const float alpha = (M + 2 * N + K) % 2 == 0 ? 1.f : 1.25f;
            check_case({t & 1 ? true : false, t & 2 ? true : false, M, N, K, alpha, beta, (M + K) % 2 ? 5 : 0},
                       seed++);
            if (HasFailure()) return;
          }
  }
}

// K beyond one chunk (256): later chunks add into C.
TEST_F(Bf16GemmPaths, LongKAcrossChunks) {
  for (Bf16GemmPath path : paths_) {
    bf16_gemm_force_path(path);
    SCOPED_TRACE(bf16_gemm_path_name());
    check_case({false, false, 33, 40, 1100, 0.5f, 0.5f, 3}, 11);
    check_case({true, true, 20, 17, 900, -1.f, 0.f, 0}, 12);
    check_case({false, true, 64, 64, 600, 1.f, 1.f, 2}, 13);  // in place: C += chunk by chunk
    check_case({true, false, 32, 64, 700, 1.f, 0.f, 0}, 14);
  }
}

TEST_F(Bf16GemmPaths, OneAndTwoThreadsGiveIdenticalResults) {
  for (Bf16GemmPath path : paths_) {
    bf16_gemm_force_path(path);
    SCOPED_TRACE(bf16_gemm_path_name());
    for (int t = 0; t < 4; ++t) {
      const Case c{t & 1 ? true : false, t & 2 ? true : false, 130, 100, 200, 1.f, 0.5f, 7};
      set_num_threads(1);
      const std::vector<float> one = check_case(c, 21);
      set_num_threads(2);
      const std::vector<float> two = check_case(c, 21);
      ASSERT_EQ(one.size(), two.size());
      EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float))) << describe(c);
    }
  }
}

// The rounding is real: on inputs that are not bf16 numbers, bf16_gemm differs from sgemm by
// about 2^-8 relative, far above the f32 bound used above.
TEST_F(Bf16GemmPaths, RoundsInputsToBf16) {
  const int64_t n = 32;
  const std::vector<float> A = random_matrix(n, n, n, 31), B = random_matrix(n, n, n, 32);
  std::vector<float> c16(n * n), c32(n * n);
  bf16_gemm(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, c16.data(), n);
  sgemm(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, c32.data(), n);
  double max_diff = 0;
  for (int64_t i = 0; i < n * n; ++i) max_diff = std::max(max_diff, std::fabs(double(c16[i]) - c32[i]));
  EXPECT_GT(max_diff, 1e-4);
  EXPECT_LT(max_diff, 0.1);
}

// bf16_gemm_bias = fill every row of C with the bias, then bf16_gemm(alpha 1, beta 1): bit for
// bit, for every transpose, odd sizes (edge blocks take the store path, full ones the in-place
// one), K over several chunks, both paths, 1 and 2 threads. C starts as NaN: the biased product
// must never read it.
TEST_F(Bf16GemmPaths, BiasSeedEqualsFillThenAccumulate) {
  struct Sizes {
    int64_t M, N, K;
  };
  const Sizes sizes[] = {{1, 1, 1}, {3, 17, 5}, {33, 40, 31}, {64, 64, 64}, {100, 70, 257}, {64, 96, 600}, {37, 33, 1100}};
  for (Bf16GemmPath path : paths_) {
    bf16_gemm_force_path(path);
    SCOPED_TRACE(bf16_gemm_path_name());
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      uint64_t seed = 71;
      for (const Sizes& z : sizes)
        for (int t = 0; t < 4; ++t) {
          const bool ta = t & 1, tb = t & 2;
          const int64_t pad = z.M % 2 ? 3 : 0;
          const int64_t lda = (ta ? z.M : z.K) + pad, ldb = (tb ? z.K : z.N) + pad, ldc = z.N + pad;
          const std::vector<float> A = random_matrix(ta ? z.K : z.M, ta ? z.M : z.K, lda, seed++);
          const std::vector<float> B = random_matrix(tb ? z.N : z.K, tb ? z.K : z.N, ldb, seed++);
          const std::vector<float> bias = random_matrix(1, z.N, z.N, seed++);
          std::vector<float> want(static_cast<size_t>(z.M * ldc), kNan), got = want;
          for (int64_t i = 0; i < z.M; ++i) std::memcpy(&want[i * ldc], bias.data(), sizeof(float) * z.N);
          bf16_gemm(ta, tb, z.M, z.N, z.K, 1.f, A.data(), lda, B.data(), ldb, 1.f, want.data(), ldc);
          bf16_gemm_bias(ta, tb, z.M, z.N, z.K, A.data(), lda, B.data(), ldb, bias.data(), got.data(), ldc);
          ASSERT_EQ(got.size(), want.size());
          int bad = 0;
          for (int64_t i = 0; i < z.M; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const float g = got[i * ldc + j], w = want[i * ldc + j];
              const bool same = j < z.N ? std::memcmp(&g, &w, sizeof(float)) == 0 && !std::isnan(g) : std::isnan(g);
              if (!same && ++bad <= 3)
                ADD_FAILURE() << "threads " << threads << " ta=" << ta << " tb=" << tb << " M=" << z.M << " N=" << z.N
                              << " K=" << z.K << ": C[" << i << "][" << j << "] = " << g << ", fill + bf16_gemm gives "
                              << w;
            }
          if (HasFailure()) return;
        }
    }
  }
}

TEST(Bf16Gemm, BiasOnForcedF32PathIsFillThenSgemm) {
  bf16_gemm_force_path(Bf16GemmPath::f32);
  const std::vector<float> A = random_matrix(37, 19, 19, 81), B = random_matrix(23, 19, 19, 82);
  const std::vector<float> bias = random_matrix(1, 23, 23, 83);
  std::vector<float> c1(37 * 23, kNan), c2(37 * 23);
  bf16_gemm_bias(false, true, 37, 23, 19, A.data(), 19, B.data(), 19, bias.data(), c1.data(), 23);
  for (int64_t i = 0; i < 37; ++i) std::memcpy(&c2[i * 23], bias.data(), sizeof(float) * 23);
  sgemm(false, true, 37, 23, 19, 1.f, A.data(), 19, B.data(), 19, 1.f, c2.data(), 23);
  bf16_gemm_force_path(Bf16GemmPath::best);
  ASSERT_EQ(c1.size(), c2.size());
  EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
  // K = 0: the bias alone.
  std::vector<float> c3(2 * 3, kNan);
  bf16_gemm_bias(false, false, 2, 3, 0, nullptr, 1, nullptr, 3, bias.data(), c3.data(), 3);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(c3[i * 3 + j], bias[j]);
}

TEST(Bf16Gemm, ForcedF32PathIsSgemm) {
  bf16_gemm_force_path(Bf16GemmPath::f32);
  EXPECT_STREQ(bf16_gemm_path_name(), "f32 (sgemm)");
  const std::vector<float> A = random_matrix(37, 19, 19, 41), B = random_matrix(19, 23, 23, 42);
  std::vector<float> c1 = random_matrix(37, 23, 23, 43), c2 = c1;
  bf16_gemm(false, false, 37, 23, 19, 1.5f, A.data(), 19, B.data(), 23, 0.5f, c1.data(), 23);
  sgemm(false, false, 37, 23, 19, 1.5f, A.data(), 19, B.data(), 23, 0.5f, c2.data(), 23);
  bf16_gemm_force_path(Bf16GemmPath::best);
  EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
}

TEST(Bf16Gemm, KZeroScalesC) {
  std::vector<float> c = {1.f, 2.f, 3.f, 4.f};
  bf16_gemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1.f, 1.5f, 2.f}));
}

TEST(MatmulPrecision, ScopeSwitchesGemmAndRestores) {
  ASSERT_EQ(matmul_precision(), MatmulPrecision::f32);
  const int64_t M = 45, N = 31, K = 70;
  const std::vector<float> A = random_matrix(K, M, M, 51), B = random_matrix(N, K, K, 52);
  const std::vector<float> C0 = random_matrix(M, N, N, 53);
  auto run = [&](auto fn) {
    std::vector<float> c = C0;
    fn(true, true, M, N, K, 0.75f, A.data(), M, B.data(), K, 0.25f, c.data(), N);
    return c;
  };
  const std::vector<float> via_sgemm = run(sgemm), via_bf16 = run(bf16_gemm);
  EXPECT_EQ(0, std::memcmp(run(gemm).data(), via_sgemm.data(), via_sgemm.size() * sizeof(float)));
  {
    MatmulPrecisionScope scope(MatmulPrecision::bf16);
    EXPECT_EQ(matmul_precision(), MatmulPrecision::bf16);
    EXPECT_EQ(0, std::memcmp(run(gemm).data(), via_bf16.data(), via_bf16.size() * sizeof(float)));
    // sgemm stays f32 whatever the mode (the attention kernels call it).
    EXPECT_EQ(0, std::memcmp(run(sgemm).data(), via_sgemm.data(), via_sgemm.size() * sizeof(float)));
  }
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);
}

TEST(MatmulPrecision, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_matmul_precision("f32", "--matmul"), MatmulPrecision::f32);
  EXPECT_EQ(parse_matmul_precision("bf16", "--matmul"), MatmulPrecision::bf16);
  EXPECT_STREQ(to_string(MatmulPrecision::bf16), "bf16");
  EXPECT_STREQ(to_string(MatmulPrecision::f32), "f32");
  try {
    parse_matmul_precision("fp16", "--matmul");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--matmul"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attn::cpu
