#include "kernels/cpu/flash_attention_internal.h"

#include <cstdlib>

namespace attn::cpu::flash_detail {
bool bf16_tiles_available() { return false; }
void bf16_pack_qt(const bf16* const*, const float*, int, int, int64_t, uint16_t*) { std::abort(); }
void bf16_qk(const uint16_t*, int, int, const bf16*, int64_t, int, int64_t, float*) { std::abort(); }
void bf16_pv(const float*, int, int, int, const bf16*, int64_t, int64_t, const float*, float*,
             int64_t, uint16_t*) { std::abort(); }
}  // namespace attn::cpu::flash_detail
