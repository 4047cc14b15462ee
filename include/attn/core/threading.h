// One threading runtime for the whole process: OpenMP. The BLAS (OpenBLAS built on OpenMP)
// shares the same pool, so the two never oversubscribe the cores.
#pragma once

#include <string>

namespace attn {

// Threads used by attn's kernels and the BLAS from now on; n <= 0 means all cores.
void set_num_threads(int n);
// The current thread count (>= 1).
int num_threads();
// Index of the calling thread inside a parallel region (0 outside one).
int thread_index();
// How idle threads wait between parallel regions, as libgomp read it at load time from the
// environment: "GOMP_SPINCOUNT=N" (which libgomp lets override the policy), else
// "OMP_WAIT_POLICY=X", else "libgomp default: spin, then sleep" (about 300,000 spins, a few
// ms). Spinning is the fast choice on an otherwise idle machine, PASSIVE on a shared one
// (docs/PERFORMANCE.md, "OpenMP wait policy"). For logs and metrics files.
std::string omp_wait_policy();

}  // namespace attn
