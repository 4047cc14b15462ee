// Benchmark of the public attention API (`attn bench attention`): for each shape, check the
// result against the reference on a small slice, then time the forward / backward / decode
// pass and set it beside the machine's own SGEMM, the naive materialised implementation and
// a STREAM-like triad, all measured in the same run.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/core/tensor.h"

namespace attn {

struct BenchShape {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 64;
  bool causal = false;
  // Padded batches: key_lengths[b] = Nk − (b mod (Nk/2 + 1)), as in training batches whose
  // sequences are padded to the longest one (batch 0 unpadded, the others down to Nk/2).
  bool key_lengths = false;
};

// "B,Hq,Hkv,Nq,Nk,D" → BenchShape (causal false); throws attn::Error naming the text.
BenchShape parse_bench_shape(const std::string& text);

// The default set: B = 1, Hq = 8, D ∈ {64, 128}, N ∈ {512, ..., 8192} causal and not; GQA
// 32/8 (N 2048, D 128); decode (Nq 1, Nk 32768, H 32, D 128); N 65536, H 1, D 64 causal (memory).
// quick: D 64, N ∈ {512, 2048} causal and not, GQA 32/8 at N 512, decode with Nk 4096.
std::vector<BenchShape> default_bench_shapes(bool quick);

struct BenchOptions {
  bool backward = false;     // also time the backward pass
  DType dtype = DType::f32;  // of q, k, v
  int reps = 5;
  double max_seconds_per_pass = 10.0;  // fewer repetitions for slow passes
  // false: time the API pass only (no naive implementation, no peak-memory rerun); for
  // profiling and instruction counts of the fused kernels at small shapes.
  bool baselines = true;
};

// One timed pass of one shape.
struct BenchRow {
  BenchShape shape;
  std::string pass;     // "forward", "backward" or "decode" (a forward with Nq == 1)
  std::string backend;  // "fused" or "reference": what the automatic backend ran
  int threads = 1;
  DType dtype = DType::f32;
  int reps = 0;
  double ms = 0;                  // median
  double gflops = 0;              // 4·B·Hq·Nq·Nk·D (×2.5 backward, ÷2 causal) / time
  double gemm_gflops = 0;         // SGEMM M = N = K = 2048, same threads, same run
  double ratio_to_gemm = 0;
  std::optional<double> naive_ms;  // materialised implementation; absent when too large
  int64_t extra_memory_bytes = -1;  // peak RSS growth beyond inputs and outputs (-1 unknown)
  double check_error = 0;         // max |api − reference| / max |reference| on the slice
  std::optional<double> decode_gbps, triad_gbps;  // decode only: K, V bytes read / time
  std::string note;
};

// SGEMM GFLOP/s at M = N = K = n (median of reps) with the current thread count.
double measure_sgemm_gflops(int64_t n = 2048, int reps = 3);
// STREAM triad a = b + s·c over 3 × 64 MiB, best of 5, GB/s (3 arrays × 4 bytes per element).
double measure_triad_gbps();

// key_lengths [B] of a padded shape (BenchShape::key_lengths), as an i32 tensor.
Tensor bench_key_lengths(const BenchShape& shape);

// Checks then times `shape`; one row per pass (forward or decode, then backward when asked).
// Throws attn::Error when the slice check fails.
std::vector<BenchRow> bench_attention_shape(const BenchShape& shape, const BenchOptions& opts,
                                            double gemm_gflops, double triad_gbps);

}  // namespace attn
