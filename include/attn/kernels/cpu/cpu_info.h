// What the CPU offers, as chosen once per process by Highway's runtime dispatch.
#pragma once

namespace attn::cpu {

// Name of the best SIMD target compiled in and supported here, e.g. "AVX3" (AVX-512).
const char* simd_target_name();
// Whether the CPU has AVX-512-BF16 (vdpbf16ps), used by the bf16 attention path.
bool has_avx512_bf16();

}  // namespace attn::cpu
