// Speed of the fused attention forward, as GFLOP/s (FLOPs = 4 B Hq Nq Nk D, counting only the
// computed half for causal) next to OpenBLAS sgemm 2048³ measured in the same run, and the
// decode path as GB/s of K/V streamed. Arg(0) = threads.
//   build/attn_microbench --benchmark_filter='Sgemm|Flash' --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/gemm.h"

namespace {

using attn::kernels::AttentionProblem;

std::vector<float> randn(int64_t n, uint64_t seed) {
  attn::Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& e : x) e = static_cast<float>(rng.normal());
  return x;
}

AttentionProblem problem(int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t D, bool causal) {
  AttentionProblem p;
  p.B = B, p.Hq = p.Hkv = H, p.Nq = Nq, p.Nk = Nk, p.D = p.Dk = p.Dv = D;
  for (int64_t* s : {p.q_stride, p.o_stride}) s[0] = H * Nq * D, s[1] = Nq * D, s[2] = D;
  for (int64_t* s : {p.k_stride, p.v_stride}) s[0] = H * Nk * D, s[1] = Nk * D, s[2] = D;
  p.scale = 1.0 / std::sqrt(static_cast<double>(D));
  p.causal = causal;
  p.query_offset = Nk - Nq;
  return p;
}

double attention_flops(const AttentionProblem& p) {
  double pairs = static_cast<double>(p.Nq) * p.Nk;
  if (p.causal) {  // keys j <= i + offset
    pairs = 0;
    for (int64_t i = 0; i < p.Nq; ++i) pairs += std::min<int64_t>(p.Nk, i + p.query_offset + 1);
  }
  return 4.0 * p.B * p.Hq * pairs * p.D;
}

void BM_Sgemm2048(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t n = 2048;
  auto a = randn(n * n, 1), b = randn(n * n, 2);
  std::vector<float> c(static_cast<size_t>(n * n));
  for (auto _ : state) attn::cpu::sgemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Sgemm2048)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// Args: threads, N, D, causal, bf16.
void BM_FlashForward(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t N = state.range(1), D = state.range(2);
  const bool causal = state.range(3) != 0, use_bf16 = state.range(4) != 0;
  const int64_t H = N >= 65536 ? 1 : 4;
  const AttentionProblem p = problem(1, H, N, N, D, causal);
  auto q = randn(H * N * D, 1), k = randn(H * N * D, 2), v = randn(H * N * D, 3);
  std::vector<float> out(q.size()), lse(static_cast<size_t>(H * N));
  std::vector<attn::bf16> qb, kb, vb;
  if (use_bf16) {
    for (auto* pr : {&q, &k, &v}) {
      auto& dst = pr == &q ? qb : pr == &k ? kb : vb;
      dst.resize(pr->size());
      for (size_t e = 0; e < pr->size(); ++e) dst[e] = attn::f32_to_bf16((*pr)[e]);
    }
  }
  for (auto _ : state) {
    if (use_bf16)
      attn::cpu::flash_attention_forward_bf16(p, qb.data(), kb.data(), vb.data(), out.data(), lse.data());
    else
      attn::cpu::flash_attention_forward(p, q.data(), k.data(), v.data(), out.data(), lse.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(attention_flops(p), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FlashForward)
    ->ArgNames({"thr", "N", "D", "causal", "bf16"})
    ->ArgsProduct({{1, 2}, {2048}, {64, 128}, {0, 1}, {0, 1}})
    ->Args({1, 65536, 64, 0, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode: Nq query rows (bottom-right causal) over Nk = 32768 keys, H = 32, D = 128.
void BM_FlashDecode(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t Nq = state.range(1), Nk = 32768, H = 32, D = 128;
  AttentionProblem p = problem(1, H, Nq, Nk, D, true);
  auto q = randn(H * Nq * D, 1), k = randn(H * Nk * D, 2), v = randn(H * Nk * D, 3);
  std::vector<float> out(q.size()), lse(static_cast<size_t>(H * Nq));
  for (auto _ : state) {
    attn::cpu::flash_attention_forward(p, q.data(), k.data(), v.data(), out.data(), lse.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * H * Nk * D * sizeof(float), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(attention_flops(p), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FlashDecode)->ArgNames({"thr", "Nq"})->ArgsProduct({{1, 2}, {1, 4, 16}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
