#include "kernels/cpu/bf16_isa.h"

#include <cstdint>

#if ATTN_BF16_TILES
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace attn::cpu::amx_detail {

#if ATTN_BF16_TILES

bool amx_usable() {
  static const bool ok = [] {
    if (!__builtin_cpu_supports("avx512bf16")) return false;
    unsigned eax, ebx, ecx, edx;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
    const bool amx_bf16 = (edx >> 22) & 1, amx_tile = (edx >> 24) & 1;
    if (!amx_bf16 || !amx_tile) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

namespace {
// The 64-byte operand of ldtilecfg (palette 1).
struct alignas(64) AmxConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
}  // namespace

ATTN_AMX_TARGET void tile_config_16x64() {
  AmxConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC 12 does not see that ldtilecfg reads cfg and drops the stores above without this.
  __asm__ volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

ATTN_AMX_TARGET void tile_release() { _tile_release(); }

#else

bool amx_usable() { return false; }
void tile_config_16x64() {}
void tile_release() {}

#endif

}  // namespace attn::cpu::amx_detail
