#include "attn/kernels/cpu/cpu_info.h"

#include <hwy/highway.h>
#include <hwy/targets.h>

namespace attn::cpu {

const char* simd_target_name() {
  // Highest bit set among the targets both compiled (HWY_TARGETS) and supported at run time.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  if (targets == 0) return "none";
  int64_t best = targets & -targets;  // lowest bit = best target in Highway's ordering
  return hwy::TargetName(best);
}

bool has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

}  // namespace attn::cpu
