#include "attn/attention/attention_bench.h"

#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "attn/attention/attention.h"
#include "attn/core/error.h"
#include "attn/core/rng.h"
#include "attn/core/tensor.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/naive_attention.h"

namespace attn {

BenchShape parse_bench_shape(const std::string& text) {
  std::vector<int64_t> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long long x = std::stoll(item, &used);
      ATTN_CHECK(used == item.size() && x > 0, "");
      v.push_back(x);
    } catch (const std::exception&) {
      fail("bench: --shape '", text, "' must be six positive integers B,Hq,Hkv,Nq,Nk,D");
    }
  }
  ATTN_CHECK(v.size() == 6, "bench: --shape '", text, "' must be six positive integers B,Hq,Hkv,Nq,Nk,D");
  ATTN_CHECK(v[1] % v[2] == 0, "bench: --shape '", text, "': Hq = ", v[1], " is not a multiple of Hkv = ", v[2]);
  return BenchShape{v[0], v[1], v[2], v[3], v[4], v[5], false};
}

std::vector<BenchShape> default_bench_shapes(bool quick) {
  std::vector<BenchShape> s;
  const std::vector<int64_t> ds = quick ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 128};
  const std::vector<int64_t> ns =
      quick ? std::vector<int64_t>{512, 2048} : std::vector<int64_t>{512, 1024, 2048, 4096, 8192};
  for (int64_t d : ds)
    for (int64_t n : ns)
      for (bool causal : {false, true}) s.push_back({1, 8, 8, n, n, d, causal});
  s.push_back({1, 32, 8, quick ? 512 : 2048, quick ? 512 : 2048, 128, true});  // GQA 32/8
  s.push_back({1, 32, 32, 1, quick ? 4096 : 32768, 128, false});               // decode
  if (!quick) s.push_back({1, 1, 1, 65536, 65536, 64, true});                  // memory
  return s;
}

namespace {

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n == 0 ? 0.0 : (n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]));
}

// Peak resident memory through the kernel's high-water mark: /proc/self/clear_refs ("5")
// resets VmHWM, so VmHWM after the call − VmRSS before it is the call's peak growth. glibc's
// mmap threshold is pinned at 64 KiB and freed memory trimmed first, so every large buffer
// the call allocates is fresh, touched memory (not recycled heap).
int64_t status_kb(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0) kb = std::atoll(line + n + 1);
  std::fclose(f);
  return kb;
}

template <class Fn>
int64_t peak_extra_bytes(Fn&& fn, int64_t output_bytes) {
  static const bool pinned = mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1;
  (void)pinned;
  malloc_trim(0);
  const int64_t rss0 = status_kb("VmRSS:");
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  const bool reset = f && std::fputs("5", f) >= 0;
  if (f) std::fclose(f);
  fn();
  const int64_t hwm = status_kb("VmHWM:");
  if (!reset || rss0 < 0 || hwm < 0) return -1;
  return std::max<int64_t>(0, (hwm - rss0) * 1024 - output_bytes);
}

// Median milliseconds of fn over up to `reps` runs after one warm-up (fewer when slow).
template <class Fn>
double time_ms(Fn&& fn, int reps, double max_seconds, int* reps_done) {
  Timer t;
  fn();
  const double first = t.seconds();
  const int n = std::clamp(static_cast<int>(max_seconds / std::max(first, 1e-9)), 1, std::max(reps, 1));
  std::vector<double> ms;
  for (int r = 0; r < n; ++r) {
    t.reset();
    fn();
    ms.push_back(t.seconds() * 1e3);
  }
  if (reps_done) *reps_done = n;
  return median(ms);
}

Tensor random_tensor(const Shape& s, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = 2.f * counter_uniform(seed, static_cast<uint64_t>(i)) - 1.f;
  return t;
}

int64_t tensor_bytes(const Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(dtype_size(t.dtype())) : 0;
}

// max |a − b| / max |b| over two tensors of the same shape.
double rel_error(const Tensor& a, const Tensor& b, const char* what) {
  ATTN_CHECK(a.shape() == b.shape(), "bench: check of ", what, ": shapes ", shape_str(a.shape()),
             " and ", shape_str(b.shape()), " differ");
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::fabs(static_cast<double>(x[i]) - y[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
    scale = std::max(scale, static_cast<double>(std::fabs(y[i])));
  }
  return err / (scale > 0 ? scale : 1.0);
}

std::string shape_text(const BenchShape& s) {
  return detail::concat(s.B, ',', s.Hq, ',', s.Hkv, ',', s.Nq, ',', s.Nk, ',', s.D);
}

kernels::AttentionProblem contiguous_problem(const BenchShape& s, bool causal) {
  kernels::AttentionProblem p;
  p.B = s.B, p.Hq = s.Hq, p.Hkv = s.Hkv, p.Nq = s.Nq, p.Nk = s.Nk, p.D = p.Dk = p.Dv = s.D;
  auto set = [&](int64_t* st, int64_t H, int64_t N) {
    st[0] = H * N * s.D, st[1] = N * s.D, st[2] = s.D;
  };
  set(p.q_stride, s.Hq, s.Nq);
  set(p.k_stride, s.Hkv, s.Nk);
  set(p.v_stride, s.Hkv, s.Nk);
  set(p.o_stride, s.Hq, s.Nq);
  p.scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  p.causal = causal;
  return p;
}

}  // namespace

Tensor bench_key_lengths(const BenchShape& shape) {
  std::vector<int32_t> len(static_cast<size_t>(shape.B));
  for (int64_t b = 0; b < shape.B; ++b)
    len[static_cast<size_t>(b)] = static_cast<int32_t>(shape.Nk - b % (shape.Nk / 2 + 1));
  return Tensor::from_vector_i32(len, {shape.B});
}

double measure_sgemm_gflops(int64_t n, int reps) {
  std::vector<float> a(static_cast<size_t>(n * n)), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) a[i] = b[i] = 1.f / static_cast<float>(1 + i % 7);
  const double ms = time_ms([&] { cpu::sgemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); },
                            reps, 1e9, nullptr);
  return 2.0 * n * n * n / (ms * 1e-3) * 1e-9;
}

double measure_triad_gbps() {
  const int64_t n = int64_t{1} << 24;  // 64 MiB per array, far beyond the caches
  std::vector<float> a(static_cast<size_t>(n)), b(a.size(), 1.f), c(a.size(), 2.f);
  double best = INFINITY;
  for (int r = 0; r < 5; ++r) {
    Timer t;
    float* pa = a.data();
    const float* pb = b.data();
    const float* pc = c.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.f * pc[i];
    best = std::min(best, t.seconds());
  }
  return 3.0 * 4.0 * static_cast<double>(n) / best * 1e-9;
}

std::vector<BenchRow> bench_attention_shape(const BenchShape& shape, const BenchOptions& opts,
                                            double gemm_gflops, double triad_gbps) {
  const BenchShape& s = shape;
  ATTN_CHECK(s.Hq % s.Hkv == 0, "bench: shape ", shape_text(s), ": Hq not a multiple of Hkv");
  const bool bf16 = opts.dtype == DType::bf16;
  Tensor q32 = random_tensor({s.B, s.Hq, s.Nq, s.D}, 1);
  Tensor k32 = random_tensor({s.B, s.Hkv, s.Nk, s.D}, 2);
  Tensor v32 = random_tensor({s.B, s.Hkv, s.Nk, s.D}, 3);
  Tensor q = bf16 ? q32.to(DType::bf16) : q32, k = bf16 ? k32.to(DType::bf16) : k32,
         v = bf16 ? v32.to(DType::bf16) : v32;
  AttentionOptions ao;
  ao.causal = s.causal;
  AttentionExtras extras;
  if (s.key_lengths) extras.key_lengths = bench_key_lengths(s);

  // Check on a slice (the last batch, the first kv head's query group, the first rows and
  // keys) before timing: the automatic backend against the reference, and find out which one
  // the automatic backend uses (the fused backend throws when it is not built).
  const int64_t G = s.Hq / s.Hkv, nq = std::min<int64_t>(s.Nq, 96), nk = std::min<int64_t>(s.Nk, 160);
  const int64_t bl = s.B - 1;
  const Tensor qs = q.slice(0, bl, bl + 1).slice(1, 0, G).slice(2, 0, nq);
  const Tensor ks = k.slice(0, bl, bl + 1).slice(1, 0, 1).slice(2, 0, nk);
  const Tensor vs = v.slice(0, bl, bl + 1).slice(1, 0, 1).slice(2, 0, nk);
  AttentionExtras extras_s;
  if (s.key_lengths)
    extras_s.key_lengths = Tensor::from_vector_i32(
        {static_cast<int32_t>(std::min<int64_t>(nk, extras.key_lengths.data<int32_t>()[bl]))}, {1});
  AttentionOptions ref_opts = ao, fused_opts = ao;
  ref_opts.backend = AttentionBackend::reference;
  fused_opts.backend = AttentionBackend::fused;
  const AttentionOutput want = attention_forward(qs, ks, vs, extras_s, ref_opts);
  const AttentionOutput got = attention_forward(qs, ks, vs, extras_s, ao);
  double check_fwd = rel_error(got.out, want.out, "out");
  bool fused_fwd = true, fused_bwd = true;
  try {
    attention_forward(qs, ks, vs, extras_s, fused_opts);
  } catch (const Error&) {
    fused_fwd = false;
  }
  double check_bwd = 0;
  Tensor dout_s = random_tensor(want.out.shape(), 9);
  if (opts.backward) {
    const AttentionGrads gw = attention_backward(qs, ks, vs, extras_s, ref_opts, want, dout_s);
    const AttentionGrads gg = attention_backward(qs, ks, vs, extras_s, ao, want, dout_s);
    check_bwd = std::max({rel_error(gg.dq, gw.dq, "dq"), rel_error(gg.dk, gw.dk, "dk"),
                          rel_error(gg.dv, gw.dv, "dv")});
    try {
      attention_backward(qs, ks, vs, extras_s, fused_opts, want, dout_s);
    } catch (const Error&) {
      fused_bwd = false;
    }
  }
  const double tol = bf16 ? 3e-2 : 1e-4;
  ATTN_CHECK(check_fwd <= tol && check_bwd <= tol, "bench: shape ", shape_text(s),
             ": the automatic backend differs from the reference on a slice (relative error ",
             std::max(check_fwd, check_bwd), " > ", tol, "); not timing a wrong result");

  const double causal_factor = s.causal ? 0.5 : 1.0;
  const double fwd_flops = 4.0 * s.B * s.Hq * s.Nq * s.Nk * s.D * causal_factor;
  // The double-precision reference runs at ~1 GFLOP/s: beyond this it would take minutes.
  const double ref_flop_limit = 4e9;
  // The naive kernels take no key lengths: only unpadded shapes get their baseline.
  const bool naive_fits = opts.baselines && !s.key_lengths &&
                          static_cast<double>(s.Nq) * s.Nk * 4 * 2 <= 2e9;  // S and dP
  const kernels::AttentionProblem prob = contiguous_problem(s, s.causal);

  std::vector<BenchRow> rows;
  auto base_row = [&](const char* pass, bool fused) {
    BenchRow r;
    r.shape = s;
    r.pass = pass;
    r.backend = fused ? "fused" : "reference";
    r.threads = num_threads();
    r.dtype = opts.dtype;
    r.gemm_gflops = gemm_gflops;
    return r;
  };

  // Forward (or decode).
  BenchRow fr = base_row(s.Nq == 1 ? "decode" : "forward", fused_fwd);
  fr.check_error = check_fwd;
  AttentionOutput fwd;
  if (!fused_fwd && fwd_flops > ref_flop_limit) {
    fr.note = "skipped: the fused forward is not wired in and the reference would take minutes";
  } else {
    fr.ms = time_ms([&] { fwd = attention_forward(q, k, v, extras, ao); }, opts.reps,
                    opts.max_seconds_per_pass, &fr.reps);
    fr.gflops = fwd_flops / (fr.ms * 1e-3) * 1e-9;
    fr.ratio_to_gemm = gemm_gflops > 0 ? fr.gflops / gemm_gflops : 0.0;
    if (opts.baselines)
      fr.extra_memory_bytes = peak_extra_bytes(
          [&] {
            AttentionOutput o = attention_forward(q, k, v, extras, ao);
            (void)o;
          },
          tensor_bytes(fwd.out) + tensor_bytes(fwd.lse));
    if (s.Nq == 1) {
      const double bytes = 2.0 * s.B * s.Hkv * s.Nk * s.D * static_cast<double>(dtype_size(opts.dtype));
      fr.decode_gbps = bytes / (fr.ms * 1e-3) * 1e-9;
      fr.triad_gbps = triad_gbps;
    }
  }
  if (naive_fits) {
    std::vector<float> out(static_cast<size_t>(s.B * s.Hq * s.Nq * s.D)), lse(static_cast<size_t>(s.B * s.Hq * s.Nq));
    fr.naive_ms = time_ms([&] { cpu::naive_attention_forward(prob, q32.data<float>(), k32.data<float>(),
                                                             v32.data<float>(), out.data(), lse.data()); },
                          opts.reps, opts.max_seconds_per_pass, nullptr);
  }
  rows.push_back(fr);

  if (opts.backward && s.Nq > 1) {
    BenchRow br = base_row("backward", fused_bwd);
    br.check_error = check_bwd;
    const double bwd_flops = 2.5 * fwd_flops;
    if (!fwd.out.defined() && naive_fits) {
      // The forward was skipped (reference too slow): out and lse from the naive kernel.
      fwd.out = Tensor::empty({s.B, s.Hq, s.Nq, s.D});
      fwd.lse = Tensor::empty({s.B, s.Hq, s.Nq});
      cpu::naive_attention_forward(prob, q32.data<float>(), k32.data<float>(), v32.data<float>(),
                                   fwd.out.data<float>(), fwd.lse.data<float>());
      br.note = "out and lse from the naive forward";
    }
    if (!fwd.out.defined()) {
      br.note = "skipped: needs the forward's out and lse, and the forward was skipped";
    } else if (!fused_bwd && bwd_flops > ref_flop_limit) {
      br.note = "skipped: the fused backward is not wired in and the reference would take minutes";
    } else {
      Tensor dout = random_tensor(fwd.out.shape(), 10);
      AttentionGrads grads;
      br.ms = time_ms([&] { grads = attention_backward(q, k, v, extras, ao, fwd, dout); }, opts.reps,
                      opts.max_seconds_per_pass, &br.reps);
      br.gflops = bwd_flops / (br.ms * 1e-3) * 1e-9;
      br.ratio_to_gemm = gemm_gflops > 0 ? br.gflops / gemm_gflops : 0.0;
      const int64_t out_bytes = tensor_bytes(grads.dq) + tensor_bytes(grads.dk) + tensor_bytes(grads.dv);
      grads = AttentionGrads{};
      if (opts.baselines)
        br.extra_memory_bytes = peak_extra_bytes(
            [&] {
              AttentionGrads g = attention_backward(q, k, v, extras, ao, fwd, dout);
              (void)g;
            },
            out_bytes);
      if (naive_fits) {
        std::vector<float> out(static_cast<size_t>(s.B * s.Hq * s.Nq * s.D)), lse(static_cast<size_t>(s.B * s.Hq * s.Nq));
        cpu::naive_attention_forward(prob, q32.data<float>(), k32.data<float>(), v32.data<float>(),
                                     out.data(), lse.data());
        std::vector<float> dq(q32.numel()), dk(k32.numel()), dv(v32.numel());
        br.naive_ms = time_ms(
            [&] {
              cpu::naive_attention_backward(prob, q32.data<float>(), k32.data<float>(), v32.data<float>(),
                                            out.data(), lse.data(), dout.data<float>(), dq.data(),
                                            dk.data(), dv.data());
            },
            opts.reps, opts.max_seconds_per_pass, nullptr);
      }
    }
    rows.push_back(br);
  }
  return rows;
}

}  // namespace attn
