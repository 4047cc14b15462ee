// bf16 tiles of the fused attention forward. Two implementations of the same two products:
//  - AMX (tdpbf16ps: a 16x16 f32 tile += 16x32 bf16 tile times a 32x16 bf16 tile in pairs),
//    by far the fastest where present (Sapphire Rapids and later);
//  - AVX-512-BF16 (vdpbf16ps: acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1]).
// Both take their operands in pairs along the reduction axis:
//   Q·Kᵀ: Qt2[d/2][r][2] (packed once per query block) times the pair (k_c[d], k_c[d+1])
//         broadcast straight from the K row;
//   P·V:  Vp[c/2][e][2] (two V rows interleaved, per tile) times the pair (P[r][c], P[r][c+1]).
// For AMX, Sᵀ = K Qᵀ takes K rows straight from memory as the A tile and P·V needs P row-major,
// made by scattering the pairs. Highway 1.0.3 has no target with these instructions, so this
// file uses intrinsics in functions compiled for them, chosen when the CPU reports them.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/bf16_isa.h"
#include "kernels/cpu/flash_attention_internal.h"

#if ATTN_BF16_TILES
#include <immintrin.h>
#endif

namespace attn::cpu::flash_detail {

#if ATTN_BF16_TILES

void bf16_pack_qt(const bf16* const* rows, const float* row_mul, int nrows, int br, int64_t D,
                  uint16_t* qt2) {
  const int64_t D2 = (D + 31) / 32 * 16;
  for (int64_t d2 = 0; d2 < D2; ++d2) {
    uint16_t* dst = qt2 + d2 * br * 2;
    for (int r = 0; r < br; ++r) {
      for (int t = 0; t < 2; ++t) {
        const int64_t dd = 2 * d2 + t;
        uint16_t x = 0;
        if (r < nrows && dd < D) {
          x = row_mul[r] == 1.f ? rows[r][dd].bits
                                : f32_to_bf16(bf16_to_f32(rows[r][dd]) * row_mul[r]).bits;
        }
        dst[2 * r + t] = x;
      }
    }
  }
}

namespace {

ATTN_BF16_TARGET inline __m512bh as_bh(__m512i x) {
  __m512bh y;
  std::memcpy(&y, &x, sizeof(y));
  return y;
}

ATTN_BF16_TARGET inline uint32_t load_pair(const bf16* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

template <int RK, int QV>
ATTN_BF16_TARGET inline void qk_micro(const uint16_t* qt2, int br, const bf16* k, int64_t ldk,
                                      int64_t D, float* st) {
  __m512 acc[RK][QV];
  for (int c = 0; c < RK; ++c)
    for (int v = 0; v < QV; ++v) acc[c][v] = _mm512_setzero_ps();
  const int64_t D2 = D / 2;
  for (int64_t d2 = 0; d2 < D2; ++d2) {
    __m512i qv[QV];
    for (int v = 0; v < QV; ++v) qv[v] = _mm512_load_si512(qt2 + (d2 * br + v * 16) * 2);
    for (int c = 0; c < RK; ++c) {
      const __m512i kb = _mm512_set1_epi32(static_cast<int>(load_pair(k + c * ldk + 2 * d2)));
      for (int v = 0; v < QV; ++v) acc[c][v] = _mm512_dpbf16_ps(acc[c][v], as_bh(qv[v]), as_bh(kb));
    }
  }
  if (D % 2) {  // last element alone: the pair's upper half is 0 (never read past the row)
    __m512i qv[QV];
    for (int v = 0; v < QV; ++v) qv[v] = _mm512_load_si512(qt2 + (D2 * br + v * 16) * 2);
    for (int c = 0; c < RK; ++c) {
      const __m512i kb = _mm512_set1_epi32(static_cast<int>(k[c * ldk + D - 1].bits));
      for (int v = 0; v < QV; ++v) acc[c][v] = _mm512_dpbf16_ps(acc[c][v], as_bh(qv[v]), as_bh(kb));
    }
  }
  for (int c = 0; c < RK; ++c)
    for (int v = 0; v < QV; ++v) _mm512_store_ps(st + c * br + v * 16, acc[c][v]);
}

template <int QV>
ATTN_BF16_TARGET void qk_qv(const uint16_t* qt2, int br, const bf16* k, int64_t ldk, int nk,
                            int64_t D, float* st) {
  constexpr int kRk = 8;
  int c = 0;
  for (; c + kRk <= nk; c += kRk) qk_micro<kRk, QV>(qt2, br, k + c * ldk, ldk, D, st + c * br);
  for (; c + 2 <= nk; c += 2) qk_micro<2, QV>(qt2, br, k + c * ldk, ldk, D, st + c * br);
  if (c < nk) qk_micro<1, QV>(qt2, br, k + c * ldk, ldk, D, st + c * br);
}

// Interleaves two rows of 32 bf16: out_lo = (a0 b0 a1 b1 ... a15 b15), out_hi = (a16 b16 ...).
ATTN_BF16_TARGET inline void interleave(__m512i a, __m512i b, __m512i* lo, __m512i* hi) {
  alignas(64) static const uint16_t kLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                               8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                               24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  *lo = _mm512_permutex2var_epi16(a, _mm512_load_si512(kLo), b);
  *hi = _mm512_permutex2var_epi16(a, _mm512_load_si512(kHi), b);
}

template <int R, int C>
ATTN_BF16_TARGET inline void pv_micro(const uint32_t* p2, int br, int nk2, const uint32_t* vp,
                                      int64_t ldo, const float* alpha, float* o) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
    for (int u = 0; u < C; ++u) acc[r][u] = _mm512_mul_ps(_mm512_load_ps(o + r * ldo + u * 16), a);
  }
  for (int c2 = 0; c2 < nk2; ++c2) {
    __m512i vv[C];
    for (int u = 0; u < C; ++u) vv[u] = _mm512_load_si512(vp + c2 * ldo + u * 16);
    for (int r = 0; r < R; ++r) {
      const __m512i pb = _mm512_set1_epi32(static_cast<int>(p2[c2 * br + r]));
      for (int u = 0; u < C; ++u) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], as_bh(pb), as_bh(vv[u]));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) _mm512_store_ps(o + r * ldo + u * 16, acc[r][u]);
}

template <int R>
ATTN_BF16_TARGET void pv_rows(const uint32_t* p2, int br, int nk2, const uint32_t* vp, int64_t ldo,
                              const float* alpha, float* o) {
  const int64_t nvec = ldo / 16;
  int64_t u = 0;
  for (; u + 4 <= nvec; u += 4) pv_micro<R, 4>(p2, br, nk2, vp + u * 16, ldo, alpha, o + u * 16);
  for (; u < nvec; ++u) pv_micro<R, 1>(p2, br, nk2, vp + u * 16, ldo, alpha, o + u * 16);
}

ATTN_BF16_TARGET void dp_qk(const uint16_t* qt2, int br, int nqv, const bf16* k, int64_t ldk,
                              int nk, int64_t D, float* st) {
  switch (nqv) {
    case 1: qk_qv<1>(qt2, br, k, ldk, nk, D, st); break;
    case 2: qk_qv<2>(qt2, br, k, ldk, nk, D, st); break;
    default: qk_qv<3>(qt2, br, k, ldk, nk, D, st); break;
  }
}

ATTN_BF16_TARGET void dp_pv(const float* pt, int br, int nrows, int nk, const bf16* v,
                              int64_t ldv, int64_t Dv, const float* alpha, float* o, int64_t ldo,
                              uint16_t* vscratch) {
  const int nk2 = (nk + 1) / 2;
  uint32_t* vp = reinterpret_cast<uint32_t*>(vscratch);  // [nk2][ldo] pairs
  // Interleave V rows (2 c2, 2 c2 + 1) in 32-column steps; missing rows / columns are 0.
  for (int c2 = 0; c2 < nk2; ++c2) {
    const bf16* a = v + (2 * c2) * ldv;
    const bf16* b = 2 * c2 + 1 < nk ? v + (2 * c2 + 1) * ldv : nullptr;
    for (int64_t e = 0; e < ldo; e += 32) {
      const int64_t n = Dv - e;
      const __mmask32 m = n >= 32 ? ~__mmask32{0} : n > 0 ? static_cast<__mmask32>((1u << n) - 1) : 0;
      const __m512i va = _mm512_maskz_loadu_epi16(m, a + e);
      const __m512i vb = b ? _mm512_maskz_loadu_epi16(m, b + e) : _mm512_setzero_si512();
      __m512i lo, hi;
      interleave(va, vb, &lo, &hi);
      _mm512_store_si512(vp + c2 * ldo + e, lo);
      if (e + 16 < ldo) _mm512_store_si512(vp + c2 * ldo + e + 16, hi);
    }
  }
  // P pairs (P[r][2 c2], P[r][2 c2 + 1]) for 16 rows at a time.
  alignas(64) uint32_t p2[(kBc / 2) * (kQueryVecs * 16)];
  alignas(64) static const uint16_t kPair[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair_idx = _mm512_load_si512(kPair);
  const int nqv = (nrows + 15) / 16;
  for (int c2 = 0; c2 < nk2; ++c2) {
    for (int qv = 0; qv < nqv; ++qv) {
      const __m512 p0 = _mm512_load_ps(pt + (2 * c2) * br + qv * 16);
      const __m512 p1 = 2 * c2 + 1 < nk ? _mm512_load_ps(pt + (2 * c2 + 1) * br + qv * 16) : _mm512_setzero_ps();
      // cvtne2ps: low 16 bf16 from the second operand, high 16 from the first.
      const __m512bh pb = _mm512_cvtne2ps_pbh(p1, p0);
      __m512i both;
      std::memcpy(&both, &pb, sizeof(both));
      _mm512_store_si512(p2 + c2 * br + qv * 16, _mm512_permutexvar_epi16(pair_idx, both));
    }
  }
  int r = 0;
  for (; r + 6 <= nrows; r += 6) pv_rows<6>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo);
  switch (nrows - r) {
    case 1: pv_rows<1>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo); break;
    case 2: pv_rows<2>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo); break;
    case 3: pv_rows<3>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo); break;
    case 4: pv_rows<4>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo); break;
    case 5: pv_rows<5>(p2 + r, br, nk2, vp, ldo, alpha + r, o + r * ldo); break;
    default: break;
  }
}

// ---------------------------------------------------------------- AMX

void amx_begin() { amx_detail::tile_config_16x64(); }

void amx_end() { amx_detail::tile_release(); }

// Sᵀ tile rows: 16 keys (A = K rows, 32 d per step) x 16 query rows (B = Qt2 pairs).
ATTN_AMX_TARGET void amx_qk(const uint16_t* qt2, int br, int nqv, const bf16* k, int64_t ldk,
                            int nk, int64_t D, float* st) {
  const int64_t Dp = (D + 31) / 32 * 32;
  thread_local std::vector<bf16> kbuf;
  const int64_t bstride = static_cast<int64_t>(br) * 4;
  for (int kg = 0; kg < nk; kg += 16) {
    const int nrow = std::min(16, nk - kg);
    const bf16* a = k + kg * ldk;
    int64_t astride = ldk * 2;
    if (nrow < 16 || D % 32 != 0) {  // zero-padded copy: never read past the rows given
      kbuf.assign(static_cast<size_t>(16 * Dp), bf16{});
      for (int c = 0; c < nrow; ++c) std::memcpy(kbuf.data() + c * Dp, a + c * ldk, D * 2);
      a = kbuf.data();
      astride = Dp * 2;
    }
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int64_t t = 0; t < Dp / 32; ++t) {
      _tile_loadd(3, a + 32 * t, astride);
      const uint16_t* b = qt2 + 16 * t * br * 2;
      _tile_loadd(4, b, bstride);
      _tile_dpbf16ps(0, 3, 4);
      if (nqv > 1) {
        _tile_loadd(5, b + 32, bstride);
        _tile_dpbf16ps(1, 3, 5);
      }
      if (nqv > 2) {
        _tile_loadd(6, b + 64, bstride);
        _tile_dpbf16ps(2, 3, 6);
      }
    }
    float* c = st + kg * br;
    _tile_stored(0, c, bstride);
    if (nqv > 1) _tile_stored(1, c + 16, bstride);
    if (nqv > 2) _tile_stored(2, c + 32, bstride);
  }
}

// O tiles: 16 query rows (A = P row-major, 32 keys per step) x 16 columns (B = V pairs).
ATTN_AMX_TARGET void amx_pv(const float* pt, int br, int nrows, int nk, const bf16* v,
                            int64_t ldv, int64_t Dv, const float* alpha, float* o, int64_t ldo,
                            uint16_t* vscratch) {
  const int ns = (nk + 31) / 32;  // 32-key steps
  const int nk2 = ns * 16;
  const int nqv = (nrows + 15) / 16;
  uint32_t* vp = reinterpret_cast<uint32_t*>(vscratch);  // [nk2][ldo] pairs
  for (int c2 = 0; c2 < nk2; ++c2) {
    const bf16* a = 2 * c2 < nk ? v + (2 * c2) * ldv : nullptr;
    const bf16* b = 2 * c2 + 1 < nk ? v + (2 * c2 + 1) * ldv : nullptr;
    for (int64_t e = 0; e < ldo; e += 32) {
      const int64_t n = Dv - e;
      const __mmask32 m = n >= 32 ? ~__mmask32{0} : n > 0 ? static_cast<__mmask32>((1u << n) - 1) : 0;
      const __m512i va = a ? _mm512_maskz_loadu_epi16(m, a + e) : _mm512_setzero_si512();
      const __m512i vb = b ? _mm512_maskz_loadu_epi16(m, b + e) : _mm512_setzero_si512();
      __m512i lo, hi;
      interleave(va, vb, &lo, &hi);
      _mm512_store_si512(vp + c2 * ldo + e, lo);
      if (e + 16 < ldo) _mm512_store_si512(vp + c2 * ldo + e + 16, hi);
    }
  }
  // P row-major in pairs: pa[r][c2] = (P[r][2 c2], P[r][2 c2 + 1]), 32 pairs per row.
  alignas(64) uint32_t pa[kQueryVecs * 16 * (kBc / 2)];
  alignas(64) static const uint16_t kPair[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair_idx = _mm512_load_si512(kPair);
  const __m512i row_idx = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(kBc / 2));
  for (int c2 = 0; c2 < nk2; ++c2) {
    for (int qv = 0; qv < nqv; ++qv) {
      const __m512 p0 = 2 * c2 < nk ? _mm512_load_ps(pt + (2 * c2) * br + qv * 16) : _mm512_setzero_ps();
      const __m512 p1 = 2 * c2 + 1 < nk ? _mm512_load_ps(pt + (2 * c2 + 1) * br + qv * 16) : _mm512_setzero_ps();
      const __m512bh pb = _mm512_cvtne2ps_pbh(p1, p0);
      __m512i both;
      std::memcpy(&both, &pb, sizeof(both));
      _mm512_i32scatter_epi32(pa + qv * 16 * (kBc / 2) + c2, row_idx,
                              _mm512_permutexvar_epi16(pair_idx, both), 4);
    }
  }
  // O = diag(alpha) O, then O += P V tile by tile.
  for (int r = 0; r < nqv * 16; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
    for (int64_t e = 0; e < ldo; e += 16) _mm512_store_ps(o + r * ldo + e, _mm512_mul_ps(a, _mm512_load_ps(o + r * ldo + e)));
  }
  const int64_t ostride = ldo * 4, pstride = (kBc / 2) * 4;
  for (int64_t u = 0; u < ldo; u += 16) {
    _tile_loadd(0, o + u, ostride);
    if (nqv > 1) _tile_loadd(1, o + 16 * ldo + u, ostride);
    if (nqv > 2) _tile_loadd(2, o + 32 * ldo + u, ostride);
    for (int sidx = 0; sidx < ns; ++sidx) {
      _tile_loadd(4, vp + sidx * 16 * ldo + u, ostride);
      _tile_loadd(3, pa + sidx * 16, pstride);
      _tile_dpbf16ps(0, 3, 4);
      if (nqv > 1) {
        _tile_loadd(5, pa + 16 * (kBc / 2) + sidx * 16, pstride);
        _tile_dpbf16ps(1, 5, 4);
      }
      if (nqv > 2) {
        _tile_loadd(6, pa + 32 * (kBc / 2) + sidx * 16, pstride);
        _tile_dpbf16ps(2, 6, 4);
      }
    }
    _tile_stored(0, o + u, ostride);
    if (nqv > 1) _tile_stored(1, o + 16 * ldo + u, ostride);
    if (nqv > 2) _tile_stored(2, o + 32 * ldo + u, ostride);
  }
}

void no_op() {}

}  // namespace

const Bf16Tiles* bf16_tiles(bool allow_amx) {
  static const Bf16Tiles amx{"AMX-BF16", amx_begin, amx_end, amx_qk, amx_pv};
  static const Bf16Tiles dp{"AVX512-BF16", no_op, no_op, dp_qk, dp_pv};
  if (allow_amx && amx_detail::amx_usable()) return &amx;
  if (__builtin_cpu_supports("avx512bf16")) return &dp;
  return nullptr;
}

#else  // no compiler support: the f32 fallback always runs

void bf16_pack_qt(const bf16* const*, const float*, int, int, int64_t, uint16_t*) {}
const Bf16Tiles* bf16_tiles(bool) { return nullptr; }

#endif

}  // namespace attn::cpu::flash_detail
