// Speed of the fused attention backward alone (cpu::flash_attention_backward), as GFLOP/s with
// FLOPs = 2.5 · 4 B Hq Nq Nk D (the count of `attn bench attention`), timed in process CPU time
// so that A/B runs on a shared machine are less at the mercy of other processes. Shapes of
// issue 3: B = 1, H = 8, N = 2048, D = 64 and 128. Arg(0) = threads.
//   build/attn_microbench --benchmark_filter='Sgemm2048|FlashBackward' --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/flash_attention_backward.h"

namespace {

using attn::kernels::AttentionProblem;

// Args: threads, N, D.
void BM_FlashBackward(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t N = state.range(1), D = state.range(2), H = 8;
  AttentionProblem p;
  p.B = 1, p.Hq = p.Hkv = H, p.Nq = p.Nk = N, p.D = p.Dk = p.Dv = D;
  for (int64_t* s : {p.q_stride, p.k_stride, p.v_stride, p.o_stride}) s[0] = H * N * D, s[1] = N * D, s[2] = D;
  p.scale = 1.0 / std::sqrt(static_cast<double>(D));
  const size_t n = static_cast<size_t>(H * N * D);
  std::vector<float> q(n), k(n), v(n), dout(n), out(n), lse(static_cast<size_t>(H * N)), dq(n), dk(n), dv(n);
  attn::Rng rng(1);
  for (auto* x : {&q, &k, &v, &dout})
    for (float& e : *x) e = static_cast<float>(rng.normal());
  attn::cpu::flash_attention_forward(p, q.data(), k.data(), v.data(), out.data(), lse.data());
  for (auto _ : state) {
    attn::cpu::flash_attention_backward(p, q.data(), k.data(), v.data(), out.data(), lse.data(),
                                        dout.data(), dq.data(), dk.data(), dv.data());
    benchmark::DoNotOptimize(dq.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.5 * 4.0 * H * N * N * D, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FlashBackward)
    ->ArgNames({"thr", "N", "D"})
    ->ArgsProduct({{1, 2}, {2048}, {64, 128}})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime();

}  // namespace
