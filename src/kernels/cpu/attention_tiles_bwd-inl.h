// Register-blocked tile products for the fused attention backward and the additive kernel:
// C (+)= A B on tiles that live in L1/L2, per Highway target (included once per target by
// foreach_target.h, hence the toggle guard instead of #pragma once).
//
// A is read one scalar at a time (broadcast), so it may have any strides: A(m, k) =
// a[m * sam + k * sak] covers A, Aᵀ and row-strided inputs alike. B and C are row-major with
// a width that is a multiple of kTileAlign floats (callers pad their tiles), so the inner
// loop needs no tails.
#if defined(ATTN_KERNELS_CPU_ATTENTION_TILES_BWD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_KERNELS_CPU_ATTENTION_TILES_BWD_INL_H_
#undef ATTN_KERNELS_CPU_ATTENTION_TILES_BWD_INL_H_
#else
#define ATTN_KERNELS_CPU_ATTENTION_TILES_BWD_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include <hwy/highway.h>

#include "kernels/cpu/transpose4-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE::tiles_bwd {
namespace hn = hwy::HWY_NAMESPACE;

// Padding of tile widths: 16 floats = one 512-bit vector, a whole number of vectors on
// every target.
constexpr int64_t kTileAlign = 16;
inline int64_t pad_width(int64_t n) { return (n + kTileAlign - 1) / kTileAlign * kTileAlign; }

// MR rows × NV vectors of C in registers; one pass over k.
template <int MR, int NV>
HWY_INLINE void micro_tile(const float* HWY_RESTRICT a, int64_t sam, int64_t sak,
                           const float* HWY_RESTRICT b, int64_t ldb, float* HWY_RESTRICT c,
                           int64_t ldc, int64_t K, bool accumulate) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  using V = hn::Vec<decltype(d)>;
  V acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NV; ++n) acc[m][n] = hn::Zero(d);
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
    for (int n = 0; n < NV; ++n) bv[n] = hn::LoadU(d, b + k * ldb + n * L);
    const float* ak = a + k * sak;
    for (int m = 0; m < MR; ++m) {
      const V av = hn::Set(d, ak[m * sam]);
      for (int n = 0; n < NV; ++n) acc[m][n] = hn::MulAdd(av, bv[n], acc[m][n]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NV; ++n) {
      float* cp = c + m * ldc + n * L;
      hn::StoreU(accumulate ? hn::Add(acc[m][n], hn::LoadU(d, cp)) : acc[m][n], d, cp);
    }
}

template <int MR>
HWY_INLINE void micro_tile_nv(int nv, const float* a, int64_t sam, int64_t sak, const float* b,
                              int64_t ldb, float* c, int64_t ldc, int64_t K, bool accumulate) {
  switch (nv) {
    case 1: micro_tile<MR, 1>(a, sam, sak, b, ldb, c, ldc, K, accumulate); break;
    case 2: micro_tile<MR, 2>(a, sam, sak, b, ldb, c, ldc, K, accumulate); break;
    case 3: micro_tile<MR, 3>(a, sam, sak, b, ldb, c, ldc, K, accumulate); break;
    default: micro_tile<MR, 4>(a, sam, sak, b, ldb, c, ldc, K, accumulate); break;
  }
}

// C[M, width] (+)= A[M, K] B[K, width]; width a multiple of kTileAlign. With K == 0 and
// !accumulate, C is zeroed.
HWY_INLINE void tile_gemm(int64_t M, int64_t width, int64_t K, const float* a, int64_t sam,
                          int64_t sak, const float* b, int64_t ldb, float* c, int64_t ldc,
                          bool accumulate) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  // 4 × 4 accumulators fill half of AVX-512's 32 registers; 4 × 2 on 16-register targets.
  const int max_nv = HWY_MAX_BYTES >= 64 ? 4 : 2;
  constexpr int kMr = HWY_MAX_BYTES >= 64 ? 6 : 4;
  const int64_t nvec = width / L;
  for (int64_t n0 = 0; n0 < nvec; n0 += max_nv) {
    const int nv = static_cast<int>(nvec - n0 < max_nv ? nvec - n0 : max_nv);
    const float* bn = b + n0 * L;
    float* cn = c + n0 * L;
    int64_t m0 = 0;
    for (; m0 + kMr <= M; m0 += kMr)
      micro_tile_nv<kMr>(nv, a + m0 * sam, sam, sak, bn, ldb, cn + m0 * ldc, ldc, K, accumulate);
    if (M - m0 >= 4) {
      micro_tile_nv<4>(nv, a + m0 * sam, sam, sak, bn, ldb, cn + m0 * ldc, ldc, K, accumulate);
      m0 += 4;
    }
    switch (M - m0) {
      case 1: micro_tile_nv<1>(nv, a + m0 * sam, sam, sak, bn, ldb, cn + m0 * ldc, ldc, K, accumulate); break;
      case 2: micro_tile_nv<2>(nv, a + m0 * sam, sam, sak, bn, ldb, cn + m0 * ldc, ldc, K, accumulate); break;
      case 3: micro_tile_nv<3>(nv, a + m0 * sam, sam, sak, bn, ldb, cn + m0 * ldc, ldc, K, accumulate); break;
      default: break;
    }
  }
}

// dst[c * ldd + j] = src[j * lds + c] for j < rows, c < cols, and 0 for rows <= j < pad_to
// (pad_to >= rows, a multiple of 4: Kᵀ, Vᵀ packs with zero columns up to the tile width).
// 4 x 4 tiles are transposed in 128-bit registers (rows past `rows` read as zeros), columns
// past the last multiple of 4 element by element (all of them on the scalar target). At
// short sequences the packs cost as much as the tile products when done element by element.
HWY_INLINE void transpose_rows(const float* HWY_RESTRICT src, int64_t lds, int64_t rows, int64_t cols,
                               float* HWY_RESTRICT dst, int64_t ldd, int64_t pad_to) {
#if HWY_TARGET != HWY_SCALAR
  const hn::FixedTag<float, 4> d4;
  const int64_t cols4 = cols / 4 * 4;
  for (int64_t j = 0; j < pad_to; j += 4) {
    const float* s0 = src + j * lds;
    const int64_t valid = rows - j < 4 ? (rows - j > 0 ? rows - j : 0) : 4;
    for (int64_t c = 0; c < cols4; c += 4) {
      const auto a = valid > 0 ? hn::LoadU(d4, s0 + c) : hn::Zero(d4);
      const auto b = valid > 1 ? hn::LoadU(d4, s0 + lds + c) : hn::Zero(d4);
      const auto e = valid > 2 ? hn::LoadU(d4, s0 + 2 * lds + c) : hn::Zero(d4);
      const auto f = valid > 3 ? hn::LoadU(d4, s0 + 3 * lds + c) : hn::Zero(d4);
      simd4::StoreTransposed(a, b, e, f, dst + c * ldd + j, ldd);
    }
    for (int64_t c = cols4; c < cols; ++c)
      for (int64_t u = 0; u < 4; ++u) dst[c * ldd + j + u] = u < valid ? s0[u * lds + c] : 0.f;
  }
#else
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t j = 0; j < pad_to; ++j) dst[c * ldd + j] = j < rows ? src[j * lds + c] : 0.f;
#endif
}

// y[0, n) += alpha * x[0, n) (any n).
HWY_INLINE void axpy(int64_t n, float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto va = hn::Set(d, alpha);
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace attn::cpu::HWY_NAMESPACE::tiles_bwd
HWY_AFTER_NAMESPACE();

#endif  // ATTN_KERNELS_CPU_ATTENTION_TILES_BWD_INL_H_
