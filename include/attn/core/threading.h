// One threading runtime for the whole process: OpenMP. The BLAS (OpenBLAS built on OpenMP)
// shares the same pool, so the two never oversubscribe the cores.
#pragma once

namespace attn {

// Threads used by attn's kernels and the BLAS from now on; n <= 0 means all cores.
void set_num_threads(int n);
// The current thread count (>= 1).
int num_threads();
// Index of the calling thread inside a parallel region (0 outside one).
int thread_index();

}  // namespace attn
