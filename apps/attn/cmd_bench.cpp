// `attn bench attention`: times the public attention API per shape beside the machine's SGEMM,
// the naive materialised implementation and (decode) a STREAM-like triad, all measured in
// this run, after checking the result against the reference on a slice.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/attention/attention_bench.h"
#include "attn/core/error.h"
#include "attn/core/threading.h"
#include "cli.h"

namespace attn::cli {

Runner setup_bench_train(CLI::App& bench);  // cmd_bench_train.cpp: `attn bench train`
Runner setup_bench_decode(CLI::App& bench);  // cmd_bench_decode.cpp: `attn bench decode`
Runner setup_bench_gemm(CLI::App& bench);  // cmd_bench_gemm.cpp: `attn bench gemm`

namespace {

struct BenchArgs {
  std::vector<std::string> shapes;
  bool causal = false;
  bool backward = false;
  std::string dtype = "f32";
  int reps = 5;
  bool json = false;
  bool quick = false;
  bool key_lengths = false;
  bool no_baselines = false;
};

nlohmann::json row_json(const BenchRow& r) {
  nlohmann::json j;
  const BenchShape& s = r.shape;
  j["shape"] = {s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.D};
  j["causal"] = s.causal;
  j["key_lengths"] = s.key_lengths;
  j["pass"] = r.pass;
  j["backend"] = r.backend;
  j["dtype"] = dtype_name(r.dtype);
  j["threads"] = r.threads;
  j["reps"] = r.reps;
  const bool timed = r.reps > 0;
  j["ms"] = timed ? nlohmann::json(r.ms) : nlohmann::json();
  j["gflops"] = timed ? nlohmann::json(r.gflops) : nlohmann::json();
  j["gemm_gflops"] = r.gemm_gflops;
  j["ratio_to_gemm"] = timed ? nlohmann::json(r.ratio_to_gemm) : nlohmann::json();
  j["naive_ms"] = r.naive_ms ? nlohmann::json(*r.naive_ms) : nlohmann::json();
  j["extra_memory_bytes"] = r.extra_memory_bytes >= 0 ? nlohmann::json(r.extra_memory_bytes) : nlohmann::json();
  j["extra_memory_method"] = "peak RSS (VmHWM after clear_refs) minus outputs";
  j["check_max_rel_error"] = r.check_error;
  if (r.decode_gbps) {
    j["decode_gbps"] = *r.decode_gbps;
    j["triad_gbps"] = *r.triad_gbps;
    j["ratio_to_triad"] = *r.decode_gbps / *r.triad_gbps;
  }
  if (!r.note.empty()) j["note"] = r.note;
  return j;
}

void print_row(const BenchRow& r) {
  const BenchShape& s = r.shape;
  char shape[96];
  std::snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld,%lld,%lld%s%s", (long long)s.B, (long long)s.Hq,
                (long long)s.Hkv, (long long)s.Nq, (long long)s.Nk, (long long)s.D, s.causal ? " causal" : "",
                s.key_lengths ? " padded" : "");
  if (r.reps == 0) {
    std::printf("%-30s %-8s %-9s  %s\n", shape, r.pass.c_str(), r.backend.c_str(), r.note.c_str());
    return;
  }
  char naive[32] = "-";
  if (r.naive_ms) std::snprintf(naive, sizeof naive, "%.2f", *r.naive_ms);
  char mem[32] = "?";
  if (r.extra_memory_bytes >= 0) std::snprintf(mem, sizeof mem, "%.1f", r.extra_memory_bytes / 1048576.0);
  std::printf("%-30s %-8s %-9s %10.3f %8.1f %6.2f %10s %9s %9.1e", shape, r.pass.c_str(), r.backend.c_str(),
              r.ms, r.gflops, r.ratio_to_gemm, naive, mem, r.check_error);
  if (r.decode_gbps)
    std::printf("  %.1f GB/s = %.2f x triad %.1f GB/s", *r.decode_gbps, *r.decode_gbps / *r.triad_gbps,
                *r.triad_gbps);
  if (!r.note.empty()) std::printf("  (%s)", r.note.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

int run_bench_attention(const BenchArgs& a) {
  ATTN_CHECK(a.dtype == "f32" || a.dtype == "bf16", "bench attention: --dtype '", a.dtype,
             "' must be f32 or bf16");
  ATTN_CHECK(a.reps >= 1, "bench attention: --reps must be >= 1, got ", a.reps);
  std::vector<BenchShape> shapes;
  if (a.shapes.empty()) {
    for (BenchShape s : default_bench_shapes(a.quick))
      if (!a.causal || s.causal || s.Nq == 1) shapes.push_back(s);
  } else {
    for (const std::string& t : a.shapes) {
      BenchShape s = parse_bench_shape(t);
      s.causal = a.causal;
      s.key_lengths = a.key_lengths;
      shapes.push_back(s);
    }
  }
  BenchOptions opts;
  opts.backward = a.backward;
  opts.dtype = a.dtype == "bf16" ? DType::bf16 : DType::f32;
  opts.reps = a.reps;
  opts.baselines = !a.no_baselines;

  const double gemm = opts.baselines ? measure_sgemm_gflops() : 0.0;
  bool any_decode = false;
  for (const BenchShape& s : shapes) any_decode |= s.Nq == 1;
  const double triad = any_decode ? measure_triad_gbps() : 0.0;
  if (!a.json) {
    std::printf("attn bench attention: %d threads, dtype %s, SGEMM 2048^3 %.1f GFLOP/s", num_threads(),
                a.dtype.c_str(), gemm);
    if (any_decode) std::printf(", triad %.1f GB/s", triad);
    std::printf("\n%-30s %-8s %-9s %10s %8s %6s %10s %9s %9s\n", "B,Hq,Hkv,Nq,Nk,D", "pass", "backend",
                "ms", "GFLOP/s", "/gemm", "naive_ms", "extra_MiB", "check");
  }
  for (const BenchShape& s : shapes) {
    for (const BenchRow& r : bench_attention_shape(s, opts, gemm, triad)) {
      if (a.json) {
        std::printf("%s\n", row_json(r).dump().c_str());
        std::fflush(stdout);
      } else {
        print_row(r);
      }
    }
  }
  return 0;
}

Runner setup_bench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  app.require_subcommand(1, 1);
  CLI::App* att = app.add_subcommand(
      "attention",
      "Time attention forward/backward/decode through the public API beside SGEMM, the naive "
      "materialised implementation and a memory triad (checked against the reference first)");
  att->add_option("--shape", args->shapes, "B,Hq,Hkv,Nq,Nk,D (repeatable); default: the standard set");
  att->add_flag("--causal", args->causal, "Causal mask (with the default set: only its causal shapes)");
  att->add_flag("--backward", args->backward, "Also time the backward pass");
  att->add_option("--dtype", args->dtype, "f32 or bf16 (q, k, v)");
  att->add_option("--reps", args->reps, "Timed repetitions per pass (median reported; fewer for slow passes)");
  att->add_flag("--json", args->json, "One JSON object per line per shape and pass");
  att->add_flag("--quick", args->quick, "A short default set");
  att->add_flag("--key-lengths", args->key_lengths,
                "Padded batches (with --shape): key_lengths[b] = Nk - b mod (Nk/2 + 1)");
  att->add_flag("--no-baselines", args->no_baselines,
                "Time the API pass only: no SGEMM, naive kernel or peak-memory rerun (for profiling)");
  Runner train = setup_bench_train(app);
  Runner decode = setup_bench_decode(app);
  Runner gemm = setup_bench_gemm(app);
  return [args, att, train, decode, gemm]() -> int {
    if (att->parsed()) return run_bench_attention(*args);
    if (const int status = train(); status != 0) return status;
    if (const int status = gemm(); status != 0) return status;
    return decode();  // each runner does nothing unless its subcommand was chosen
  };
}

ATTN_SUBCOMMAND("bench", "Benchmarks (attn bench attention|train|decode|gemm --help)", setup_bench);

}  // namespace
}  // namespace attn::cli
