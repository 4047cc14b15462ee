// `attn --version`: the version, and the SIMD target Highway's runtime dispatch chose.
#include <string>

#include "attn/kernels/cpu/cpu_info.h"

namespace attn::cli {

std::string version_string() {
  return std::string("attn ") + ATTN_VERSION + " (SIMD target: " + attn::cpu::simd_target_name() +
         ", bf16 dot products: " + (attn::cpu::has_avx512_bf16() ? "yes" : "no") + ")";
}

}  // namespace attn::cli
