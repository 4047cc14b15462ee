// Private to the fused attention forward: the shared tile geometry and the AVX-512-BF16 tile
// kernels (flash_attention_bf16.cpp), which the per-target driver calls through plain functions.
#pragma once

#include <cstdint>

#include "attn/core/dtype.h"

namespace attn::cpu::flash_detail {

// Keys per K/V tile. Query rows per block are 3 SIMD vectors (48 with AVX-512).
constexpr int kBc = 64;
constexpr int kQueryVecs = 3;

// --- AVX-512-BF16 tiles (only callable when bf16_tiles_available()) ---
bool bf16_tiles_available();

// Qt2[d/2][r][2] (bf16 pairs along d, D rounded up to even), rows r < nrows from `rows`,
// each multiplied by row_mul[r] (cosine normalisation, else 1) before rounding; pad zeros.
// br: rows per block (the stride between the pairs of one d/2).
void bf16_pack_qt(const bf16* const* rows, const float* row_mul, int nrows, int br, int64_t D,
                  uint16_t* qt2);
// st[c][r] = sum_d q[r][d] k[c][d] for keys c < nk (rows of k with stride ldk), query vectors
// (16 rows) < nqv; st has row stride br.
void bf16_qk(const uint16_t* qt2, int br, int nqv, const bf16* k, int64_t ldk, int nk, int64_t D,
             float* st);
// o[r][:] = alpha[r] * o[r][:] + sum_{c < nk} pt[c][r] v[c][:] for rows r < nrows, with P
// rounded to bf16; v rows (Dv elements) with stride ldv; o rows have stride ldo (a multiple
// of 16 >= Dv); vscratch holds kBc * ldo bf16.
void bf16_pv(const float* pt, int br, int nrows, int nk, const bf16* v, int64_t ldv, int64_t Dv,
             const float* alpha, float* o, int64_t ldo, uint16_t* vscratch);

}  // namespace attn::cpu::flash_detail
