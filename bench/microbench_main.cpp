// The one main() of attn_microbench (every bench/*.cpp registers Google Benchmark cases).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
