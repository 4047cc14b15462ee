// Private to kernels/cpu: what the bf16 kernels (fused attention tiles, bf16 GEMM) share about
// the instructions they run on. Highway 1.0.3 has no target with AVX-512-BF16 or AMX, so these
// kernels are functions compiled for the instructions (the macros below) and chosen at run time.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define ATTN_BF16_TILES 1
#define ATTN_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))
#define ATTN_AMX_TARGET \
  __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw,amx-tile,amx-bf16")))
#endif

namespace attn::cpu::amx_detail {

// Whether AMX-BF16 runs here: the CPU reports AMX-TILE, AMX-BF16 and AVX-512-BF16, and the OS
// granted the tile state to the process (Linux >= 5.16 asks for arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA) once). Cached after the first call.
bool amx_usable();

// Loads one tile configuration for the calling thread: all 8 tiles 16 rows x 64 bytes (16 f32
// or 32 bf16 per row). Call on every thread before its first tile instruction; amx_usable()
// must be true.
void tile_config_16x64();
// Releases the calling thread's tile state (after its last tile instruction).
void tile_release();

}  // namespace attn::cpu::amx_detail
