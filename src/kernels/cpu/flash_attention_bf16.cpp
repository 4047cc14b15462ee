// AVX-512-BF16 tiles of the fused attention forward: vdpbf16ps multiplies pairs of bf16 and
// accumulates in f32 (acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1]), so both products are laid out in
// pairs along their reduction axis:
//   Q·Kᵀ: Qt2[d/2][r][2] (packed once per query block) times the pair (k_c[d], k_c[d+1])
//         broadcast straight from the K row;
//   P·V:  Vp[c/2][e][2] (two V rows interleaved, per tile) times the pair (P[r][c], P[r][c+1]).
// Highway 1.0.3 has no target with these instructions, so this file uses intrinsics in
// functions compiled for them, called only when the CPU reports avx512bf16.
#include <cstring>

#include "kernels/cpu/flash_attention_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ATTN_BF16_TILES 1
#define ATTN_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))
#endif

namespace attn::cpu::flash_detail {

#if ATTN_BF16_TILES

bool bf16_tiles_available() { return __builtin_cpu_supports("avx512bf16"); }

void bf16_pack_qt(const bf16* const* rows, const float* row_mul, int nrows, int br, int64_t D,
                  uint16_t* qt2) {
  const int64_t D2 = (D + 1) / 2;
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

}  // namespace

ATTN_BF16_TARGET void bf16_qk(const uint16_t* qt2, int br, int nqv, const bf16* k, int64_t ldk,
                              int nk, int64_t D, float* st) {
  switch (nqv) {
    case 1: qk_qv<1>(qt2, br, k, ldk, nk, D, st); break;
    case 2: qk_qv<2>(qt2, br, k, ldk, nk, D, st); break;
    default: qk_qv<3>(qt2, br, k, ldk, nk, D, st); break;
  }
}

ATTN_BF16_TARGET void bf16_pv(const float* pt, int br, int nrows, int nk, const bf16* v,
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

#else  // no AVX-512-BF16 compiler support: the f32 fallback always runs

bool bf16_tiles_available() { return false; }
void bf16_pack_qt(const bf16* const*, const float*, int, int, int64_t, uint16_t*) {}
void bf16_qk(const uint16_t*, int, int, const bf16*, int64_t, int, int64_t, float*) {}
void bf16_pv(const float*, int, int, int, const bf16*, int64_t, int64_t, const float*, float*,
             int64_t, uint16_t*) {}

#endif

}  // namespace attn::cpu::flash_detail
