#include "attn/core/threading.h"

#include <omp.h>

#include <cstdlib>

extern "C" void openblas_set_num_threads(int);

namespace attn {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

int thread_index() { return omp_get_thread_num(); }

std::string omp_wait_policy() {
  if (const char* spin = std::getenv("GOMP_SPINCOUNT")) return std::string("GOMP_SPINCOUNT=") + spin;
  if (const char* policy = std::getenv("OMP_WAIT_POLICY")) return std::string("OMP_WAIT_POLICY=") + policy;
  return "libgomp default: spin, then sleep";
}

}  // namespace attn
