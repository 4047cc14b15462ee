// `attn bench gemm`: GFLOP/s of bf16_gemm (bf16 products, f32 accumulation; f32 -> bf16
// packing included) beside sgemm (OpenBLAS) at the shapes of a Linear layer's training step:
// for x [M, K] and W [N, K], forward y = x Wᵀ, backward dx = dy W and dW = dyᵀ x.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/core/error.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "cli.h"

namespace attn::cli {

namespace {

struct GemmBenchArgs {
  std::vector<std::string> shapes;  // "M,K,N"
  int reps = 5;
  bool json = false;
};

struct Product {
  const char* pass;
  bool ta, tb;
  int64_t M, N, K;
};

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                        int64_t, float, float*, int64_t);

// Median milliseconds of `reps` calls (after one untimed call).
double time_ms(GemmFn fn, const Product& p, const std::vector<float>& A, const std::vector<float>& B,
               std::vector<float>& C, int reps) {
  const int64_t lda = p.ta ? p.M : p.K, ldb = p.tb ? p.K : p.N;
  auto call = [&] { fn(p.ta, p.tb, p.M, p.N, p.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), p.N); };
  call();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    call();
    ms.push_back(t.seconds() * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int run_bench_gemm(const GemmBenchArgs& a) {
  ATTN_CHECK(a.reps >= 1, "bench gemm: --reps must be >= 1, got ", a.reps);
  std::vector<std::array<int64_t, 3>> shapes;
  if (a.shapes.empty()) shapes = {{2048, 256, 1024}, {2048, 1024, 256}, {2048, 256, 256}, {4096, 256, 39}};
  for (const std::string& s : a.shapes) {
    long long m = 0, k = 0, n = 0;
    ATTN_CHECK(std::sscanf(s.c_str(), "%lld,%lld,%lld", &m, &k, &n) == 3 && m >= 1 && k >= 1 && n >= 1,
               "bench gemm: --shape '", s, "' is not M,K,N with each >= 1");
    shapes.push_back({m, k, n});
  }
  if (!a.json)
    std::printf("attn bench gemm: %d threads, bf16 path %s; x [M, K], W [N, K]; median of %d; GFLOP/s\n",
                num_threads(), cpu::bf16_gemm_path_name(), a.reps);
  if (!a.json)
    std::printf("%-6s %6s %6s %6s  %-5s %9s %9s %7s %10s\n", "pass", "M", "N", "K", "op", "sgemm", "bf16", "ratio",
                "max relerr");
  for (const auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    const Product products[] = {{"fwd", false, true, M, N, K}, {"dx", false, false, M, K, N}, {"dW", true, false, N, K, M}};
    for (const Product& p : products) {
      Rng rng(7, 0);
      auto fill = [&](int64_t n) {
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = static_cast<float>(2 * rng.uniform() - 1);
        return v;
      };
      const std::vector<float> A = fill(p.M * p.K), B = fill(p.K * p.N);
      std::vector<float> c32(static_cast<size_t>(p.M * p.N)), c16(c32.size());
      // The bf16 result is checked against sgemm's before any figure is printed (bf16 inputs
      // give ~2^-8 relative error per term).
      const double ms32 = time_ms(cpu::sgemm, p, A, B, c32, a.reps);
      const double ms16 = time_ms(cpu::bf16_gemm, p, A, B, c16, a.reps);
      double num = 0, den = 0;
      for (size_t i = 0; i < c32.size(); ++i) {
        num = std::max(num, std::fabs(double(c16[i]) - c32[i]));
        den = std::max(den, std::fabs(double(c32[i])));
      }
      const double relerr = num / den;
      ATTN_CHECK(relerr < 2e-2, "bench gemm: bf16_gemm disagrees with sgemm (max relative error ", relerr, ")");
      const double flop = 2.0 * p.M * p.N * p.K;
      const double g32 = flop / ms32 * 1e-6, g16 = flop / ms16 * 1e-6;
      const std::string op = std::string(p.ta ? "T" : "N") + (p.tb ? "T" : "N");
      if (a.json) {
        nlohmann::json j{{"threads", num_threads()}, {"path", cpu::bf16_gemm_path_name()}, {"pass", p.pass},
                         {"M", p.M}, {"N", p.N}, {"K", p.K}, {"op", op}, {"sgemm_gflops", g32},
                         {"bf16_gflops", g16}, {"ratio", g16 / g32}, {"max_rel_error", relerr}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%-6s %6lld %6lld %6lld  %-5s %9.1f %9.1f %6.2fx %10.1e\n", p.pass, static_cast<long long>(p.M),
                    static_cast<long long>(p.N), static_cast<long long>(p.K), op.c_str(), g32, g16, g16 / g32, relerr);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

// Called by `attn bench`'s setup (cmd_bench.cpp) to add the `gemm` sub-subcommand.
Runner setup_bench_gemm(CLI::App& bench) {
  auto args = std::make_shared<GemmBenchArgs>();
  CLI::App* g = bench.add_subcommand(
      "gemm", "GFLOP/s of the bf16 GEMM (AMX / AVX512-BF16) beside sgemm at a Linear layer's training shapes");
  g->add_option("--shape", args->shapes, "M,K,N: x [M, K], W [N, K] (repeatable); default: the Transformer's");
  g->add_option("--reps", args->reps, "Timed repetitions (median reported)");
  g->add_flag("--json", args->json, "One JSON object per product");
  return [args, g]() -> int { return g->parsed() ? run_bench_gemm(*args) : 0; };
}

}  // namespace attn::cli
