// Private to the fused attention forward: the shared tile geometry and the AVX-512-BF16 tile
// kernels (flash_attention_bf16.cpp), which the per-target driver calls through plain functions.
#pragma once

#include <cstdint>

#include "attn/core/dtype.h"

namespace attn::cpu::flash_detail {

// Keys per K/V tile. Query rows per block are 3 SIMD vectors (48 with AVX-512).
constexpr int kBc = 64;
constexpr int kQueryVecs = 3;

// --- bf16 tiles: AMX (tdpbf16ps) or AVX-512-BF16 (vdpbf16ps), chosen at run time ---
//
// Qt2[d/2][r][2]: bf16 pairs along d, d padded with zeros to a multiple of 32, rows r < nrows
// from `rows` times row_mul[r] (cosine normalisation, else 1), pad rows 0; br = rows per block
// (the stride, in pairs, between consecutive d/2). Size: round_up(D, 32) * br uint16.
void bf16_pack_qt(const bf16* const* rows, const float* row_mul, int nrows, int br, int64_t D,
                  uint16_t* qt2);

struct Bf16Tiles {
  const char* name;
  void (*begin)();  // per thread, before its first tile (AMX: load the tile configuration)
  void (*end)();    // per thread, after its last tile
  // st[c][r] = sum_d q[r][d] k[c][d] for keys c < nk (k rows with stride ldk), query vectors
  // (16 rows each) < nqv; st has row stride br and room for round_up(nk, 16) rows.
  void (*qk)(const uint16_t* qt2, int br, int nqv, const bf16* k, int64_t ldk, int nk, int64_t D,
             float* st);
  // o[r][:] = alpha[r] * o[r][:] + sum_{c < nk} pt[c][r] v[c][:] for rows r < round_up(nrows,
  // 16), P rounded to bf16; v rows (Dv elements) with stride ldv; o rows have stride ldo (a
  // multiple of 16 >= Dv); vscratch holds kBc * ldo uint16.
  void (*pv)(const float* pt, int br, int nrows, int nk, const bf16* v, int64_t ldv, int64_t Dv,
             const float* alpha, float* o, int64_t ldo, uint16_t* vscratch);
};

// The best bf16 tiles this CPU runs (AMX, else AVX-512-BF16), or null. allow_amx = false
// skips AMX (for tests of the vdpbf16ps tiles).
const Bf16Tiles* bf16_tiles(bool allow_amx);

}  // namespace attn::cpu::flash_detail
