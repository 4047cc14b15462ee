// Mixed-precision GEMM: op(A) and op(B) rounded to bf16 while packed, products summed in f32.
//
// Both paths share one packed layout, the one AMX's tdpbf16ps reads (Intel SDM, "Intel AMX"):
//   A tile [16 rows][32 k]       bf16, row-major (= 16 rows x 16 k-pairs as uint32);
//   B tile [16 k-pairs][16 n][2] bf16 ("VNNI" pairs: B[2p][n], B[2p + 1][n] side by side).
// A tile times a B tile adds a 16 x 16 f32 block. AVX-512-BF16's vdpbf16ps computes the same
// pair products (acc[j] += a[2j] b[2j] + a[2j+1] b[2j+1]) from the same layout: one A pair
// broadcast against one B tile row.
//
// Blocking: K in chunks of kKc; per chunk B is packed once (all N, shared by the threads),
// then each task packs a 32-row block of A and runs over its 32-column blocks; a 32 x 32 block
// sums its whole chunk in 4 accumulator tiles, then C = alpha * acc + beta * C (beta = 1 for
// later chunks). Packing does the f32 -> bf16 rounding (vcvtne2ps2bf16: round to nearest even)
// and every transpose (16 x 16 transposes of pairs), so op(A), op(B) of any layout cost the same.
#include "attn/kernels/cpu/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "attn/core/threading.h"
#include "attn/kernels/cpu/gemm.h"
#include "kernels/cpu/bf16_isa.h"

#if ATTN_BF16_TILES
#include <immintrin.h>
#endif

namespace attn::cpu {

namespace {

std::atomic<Bf16GemmPath> g_path{Bf16GemmPath::best};

#if ATTN_BF16_TILES

constexpr int64_t kTile = 256;   // uint32 per packed tile (16 x 16 pairs = 1 KiB)
constexpr int64_t kKc = 256;    // K per chunk (a multiple of 32)

ATTN_BF16_TARGET inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

ATTN_BF16_TARGET inline __m512i to_si512(__m512bh x) {
  __m512i y;
  std::memcpy(&y, &x, sizeof(y));
  return y;
}

ATTN_BF16_TARGET inline __m512bh to_bh(__m512i x) {
  __m512bh y;
  std::memcpy(&y, &x, sizeof(y));
  return y;
}

// 16 x 16 transpose of 32-bit elements: r[i][j] -> r[j][i]. (GCC 12's unpack / shuffle
// intrinsics pass _mm512_undefined_epi32() as the merge source and trip -W[maybe-]uninitialized.)
#pragma GCC diagnostic push
#if !defined(__clang__)  // GCC-only warning group; clang (the fuzz build) rejects the name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
ATTN_BF16_TARGET inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + c], 128-bit lane L: rows 4i..4i+3, column 4L + c.
  __m512i u[16];
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
    const __m512i v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    r[4 + c] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
    r[8 + c] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
  }
}
#pragma GCC diagnostic pop

// Pairs along lines: r[l][p] = (src[l][2p], src[l][2p + 1]) for 16 lines (row stride ld) of
// 32 contiguous elements; lines >= lines and elements >= len are 0 (never read).
ATTN_BF16_TARGET inline void pairs_along(const float* src, int64_t ld, int64_t lines, int64_t len,
                                         __m512i r[16]) {
  const __mmask16 m0 = mask16(len), m1 = mask16(len - 16);
  for (int l = 0; l < 16; ++l) {
    if (l < lines) {
      const float* s = src + l * ld;
      // cvtne2ps: the low 16 bf16 come from the second operand.
      r[l] = to_si512(_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + 16), _mm512_maskz_loadu_ps(m0, s)));
    } else {
      r[l] = _mm512_setzero_si512();
    }
  }
}

// Pairs across lines: r[p][e] = (src[2p][e], src[2p + 1][e]) for 32 lines (row stride ld) of
// 16 contiguous elements; lines >= lines and elements >= width are 0.
ATTN_BF16_TARGET inline void pairs_across(const float* src, int64_t ld, int64_t lines, int64_t width,
                                          __m512i r[16]) {
  alignas(64) static const uint16_t kPair[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair_idx = _mm512_load_si512(kPair);
  const __mmask16 m = mask16(width);
  for (int p = 0; p < 16; ++p) {
    const __m512 a = 2 * p < lines ? _mm512_maskz_loadu_ps(m, src + 2 * p * ld) : _mm512_setzero_ps();
    const __m512 b = 2 * p + 1 < lines ? _mm512_maskz_loadu_ps(m, src + (2 * p + 1) * ld) : _mm512_setzero_ps();
    r[p] = _mm512_permutexvar_epi16(pair_idx, to_si512(_mm512_cvtne2ps_pbh(b, a)));
  }
}

ATTN_BF16_TARGET inline void store_tile(const __m512i r[16], uint32_t* dst) {
  for (int i = 0; i < 16; ++i) _mm512_storeu_si512(dst + 16 * i, r[i]);
}

// A tile: rows i0..i0+15 of op(A), k0..k0+31; `rows`, `len` = how many are inside op(A).
ATTN_BF16_TARGET void pack_a_tile(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t rows,
                                  int64_t k0, int64_t len, uint32_t* dst) {
  __m512i r[16];
  if (!trans_a) {  // op(A)[i][k] = A[i lda + k]: pairs along A's rows
    pairs_along(A + i0 * lda + k0, lda, rows, len, r);
  } else {  // op(A)[i][k] = A[k lda + i]: pairs across A's rows, then [p][i] -> [i][p]
    pairs_across(A + k0 * lda + i0, lda, len, rows, r);
    transpose16(r);
  }
  store_tile(r, dst);
}

// B tile: k0..k0+31 of op(B), columns n0..n0+15; `len`, `cols` = how many are inside op(B).
ATTN_BF16_TARGET void pack_b_tile(bool trans_b, const float* B, int64_t ldb, int64_t k0, int64_t len,
                                  int64_t n0, int64_t cols, uint32_t* dst) {
  __m512i r[16];
  if (!trans_b) {  // op(B)[k][n] = B[k ldb + n]: pairs across B's rows
    pairs_across(B + k0 * ldb + n0, ldb, len, cols, r);
  } else {  // op(B)[k][n] = B[n ldb + k]: pairs along B's rows, then [n][p] -> [p][n]
    pairs_along(B + n0 * ldb + k0, ldb, cols, len, r);
    transpose16(r);
  }
  store_tile(r, dst);
}

// C[rows, cols] = alpha * acc + beta * old for a block of at most 32 x 32 (acc row stride 32),
// where old row r is old + r * ldo: C itself (old = C, ldo = ldc), or a bias row (ldo = 0).
ATTN_BF16_TARGET void store_block(const float* acc, int64_t rows, int64_t cols, float alpha, float beta,
                                  const float* old, int64_t ldo, float* C, int64_t ldc) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < 2 && 16 * h < cols; ++h) {
      const __mmask16 m = mask16(cols - 16 * h);
      float* c = C + r * ldc + 16 * h;
      __m512 v = _mm512_mul_ps(va, _mm512_loadu_ps(acc + r * 32 + 16 * h));
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, old + r * ldo + 16 * h), v);
      _mm512_mask_storeu_ps(c, m, v);
    }
  }
}

// One block of up to 32 x 32: out = A rows (tiles a0, a1) times B columns (tiles b0, b1) over
// nkt 32-k steps, summed onto init (row r at init + r * ldi: out itself to accumulate, a bias
// row with ldi = 0) or onto zero when init is null; out has row stride ldo. Tiles of one
// operand are consecutive (kTile apart). two_rows / two_cols say whether a1 / b1 exist.
using BlockKernel = void (*)(const uint32_t* a0, const uint32_t* a1, const uint32_t* b0,
                             const uint32_t* b1, int64_t nkt, bool two_rows, bool two_cols, float* out,
                             int64_t ldo, const float* init, int64_t ldi);

template <bool R2, bool C2>
ATTN_AMX_TARGET void amx_block_t(const uint32_t* a0, const uint32_t* a1, const uint32_t* b0,
                                 const uint32_t* b1, int64_t nkt, float* out, int64_t ldo, const float* init,
                                 int64_t ldi) {
  const int64_t so = ldo * 4, si = ldi * 4;  // stride 0 loads one row into all 16
  if (init) {
    _tile_loadd(0, init, si);
    if (C2) _tile_loadd(1, init + 16, si);
    if (R2) _tile_loadd(2, init + 16 * ldi, si);
    if (R2 && C2) _tile_loadd(3, init + 16 * ldi + 16, si);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t t = 0; t < nkt; ++t) {
    _tile_loadd(4, a0 + t * kTile, 64);
    _tile_loadd(6, b0 + t * kTile, 64);
    if (C2) _tile_loadd(7, b1 + t * kTile, 64);
    if (R2) _tile_loadd(5, a1 + t * kTile, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (C2) _tile_dpbf16ps(1, 4, 7);
    if (R2) _tile_dpbf16ps(2, 5, 6);
    if (R2 && C2) _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, so);
  if (C2) _tile_stored(1, out + 16, so);
  if (R2) _tile_stored(2, out + 16 * ldo, so);
  if (R2 && C2) _tile_stored(3, out + 16 * ldo + 16, so);
}

void amx_block(const uint32_t* a0, const uint32_t* a1, const uint32_t* b0, const uint32_t* b1,
               int64_t nkt, bool two_rows, bool two_cols, float* out, int64_t ldo, const float* init,
               int64_t ldi) {
  if (two_rows && two_cols) amx_block_t<true, true>(a0, a1, b0, b1, nkt, out, ldo, init, ldi);
  else if (two_rows) amx_block_t<true, false>(a0, a1, b0, b1, nkt, out, ldo, init, ldi);
  else if (two_cols) amx_block_t<false, true>(a0, a1, b0, b1, nkt, out, ldo, init, ldi);
  else amx_block_t<false, false>(a0, a1, b0, b1, nkt, out, ldo, init, ldi);
}

// 8 rows of one A tile (from row r0) times one or two B tiles, into out (row stride ldo).
template <int C>
ATTN_BF16_TARGET inline void dp_rows8(const uint32_t* a, int r0, const uint32_t* b0, const uint32_t* b1,
                                      int64_t nkt, float* out, int64_t ldo, const float* init, int64_t ldi) {
  __m512 s[8][C];
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < C; ++c)
      s[r][c] = init ? _mm512_loadu_ps(init + (r0 + r) * ldi + 16 * c) : _mm512_setzero_ps();
  for (int64_t t = 0; t < nkt; ++t) {
    const uint32_t* at = a + t * kTile + r0 * 16;
    for (int p = 0; p < 16; ++p) {
      __m512i bv[C];
      bv[0] = _mm512_loadu_si512(b0 + t * kTile + p * 16);
      if constexpr (C > 1) bv[1] = _mm512_loadu_si512(b1 + t * kTile + p * 16);
      for (int r = 0; r < 8; ++r) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(at[r * 16 + p]));
        for (int c = 0; c < C; ++c) s[r][c] = _mm512_dpbf16_ps(s[r][c], to_bh(av), to_bh(bv[c]));
      }
    }
  }
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + (r0 + r) * ldo + 16 * c, s[r][c]);
}

ATTN_BF16_TARGET void dp_block(const uint32_t* a0, const uint32_t* a1, const uint32_t* b0,
                               const uint32_t* b1, int64_t nkt, bool two_rows, bool two_cols,
                               float* out, int64_t ldo, const float* init, int64_t ldi) {
  for (int rt = 0; rt < (two_rows ? 2 : 1); ++rt) {
    const uint32_t* a = rt == 0 ? a0 : a1;
    float* out_rt = out + rt * 16 * ldo;
    const float* init_rt = init ? init + rt * 16 * ldi : nullptr;
    for (int r0 = 0; r0 < 16; r0 += 8) {
      if (two_cols) dp_rows8<2>(a, r0, b0, b1, nkt, out_rt, ldo, init_rt, ldi);
      else dp_rows8<1>(a, r0, b0, b1, nkt, out_rt, ldo, init_rt, ldi);
    }
  }
}

struct Kernel {
  const char* name;
  bool amx;
  BlockKernel block;
};

const Kernel* choose_kernel() {
  static const Kernel amx{"AMX-BF16", true, amx_block};
  static const Kernel dp{"AVX512-BF16", false, dp_block};
  const Bf16GemmPath path = g_path.load(std::memory_order_relaxed);
  if (path == Bf16GemmPath::f32) return nullptr;
  if (path == Bf16GemmPath::best && amx_detail::amx_usable()) return &amx;
  if (__builtin_cpu_supports("avx512bf16")) return &dp;
  return nullptr;
}

// C = alpha op(A) op(B) + beta C; with a bias (then alpha = beta = 1), C's old values are read
// as the bias row repeated, C's contents are never read.
void run(const Kernel& kern, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
         const float* A, int64_t lda, const float* B, int64_t ldb, float beta, const float* bias, float* C,
         int64_t ldc) {
  const int64_t n_tiles = (N + 15) / 16;        // 16-column B tiles
  const int64_t m_blocks = (M + 31) / 32;       // 32-row tasks
  const int64_t n_blocks = (n_tiles + 1) / 2;   // 32-column blocks
  const int64_t kc_max = std::min(kKc, (K + 31) / 32 * 32);
  const int threads = num_threads();
  // Split N too when there are few row blocks, so that every thread has work.
  int64_t n_groups = 1;
  while (m_blocks * n_groups < 4 * threads && n_groups * 2 <= n_blocks) n_groups *= 2;
  const int64_t tasks = m_blocks * n_groups;
  // Small products are not worth waking the team.
  const bool parallel = threads > 1 && 2.0 * M * N * K > 4e6;

  thread_local std::vector<uint32_t> b_pack;
  b_pack.resize(static_cast<size_t>(n_tiles * (kc_max / 32) * kTile));
  uint32_t* bp = b_pack.data();

  for (int64_t k0 = 0; k0 < K; k0 += kKc) {
    const int64_t kc = std::min(kKc, K - k0);
    const int64_t nkt = (kc + 31) / 32;
    const float beta_k = k0 == 0 ? beta : 1.f;
    // alpha = 1 and beta in {0, 1} (what autograd asks for): full blocks sum straight in C.
    const bool direct = alpha == 1.f && (beta_k == 0.f || beta_k == 1.f);
#pragma omp parallel if (parallel)
    {
      if (kern.amx) amx_detail::tile_config_16x64();
      // B chunk: bp[nt][kt] tiles.
#pragma omp for schedule(static)
      for (int64_t nt = 0; nt < n_tiles; ++nt)
        for (int64_t kt = 0; kt < nkt; ++kt)
          pack_b_tile(trans_b, B, ldb, k0 + 32 * kt, kc - 32 * kt, 16 * nt, N - 16 * nt,
                      bp + (nt * nkt + kt) * kTile);
      thread_local std::vector<uint32_t> a_pack;
      a_pack.resize(static_cast<size_t>(2 * nkt * kTile));
      uint32_t* ap = a_pack.data();
      alignas(64) float acc[32 * 32];
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t mb = task / n_groups, ng = task % n_groups;
        const int64_t i0 = 32 * mb, rows = std::min<int64_t>(32, M - i0);
        for (int rt = 0; rt < 2; ++rt)
          for (int64_t kt = 0; kt < nkt; ++kt)
            pack_a_tile(trans_a, A, lda, i0 + 16 * rt, rows - 16 * rt, k0 + 32 * kt, kc - 32 * kt,
                        ap + (rt * nkt + kt) * kTile);
        const int64_t nb_begin = n_blocks * ng / n_groups, nb_end = n_blocks * (ng + 1) / n_groups;
        for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
          const int64_t j0 = 32 * nb, cols = std::min<int64_t>(32, N - j0);
          const uint32_t* b0 = bp + (2 * nb) * nkt * kTile;
          float* c = C + i0 * ldc + j0;
          // The first chunk of a biased product starts from the bias row instead of C.
          const bool from_bias = bias != nullptr && k0 == 0;
          const float* old = from_bias ? bias + j0 : c;
          const int64_t ld_old = from_bias ? 0 : ldc;
          if (direct && rows == 32 && cols == 32) {  // C += or = the product, in place
            kern.block(ap, ap + nkt * kTile, b0, b0 + nkt * kTile, nkt, true, true, c, ldc,
                       beta_k == 1.f ? old : nullptr, ld_old);
          } else {
            kern.block(ap, ap + nkt * kTile, b0, b0 + nkt * kTile, nkt, rows > 16, cols > 16, acc, 32, nullptr, 0);
            store_block(acc, rows, cols, alpha, beta_k, old, ld_old, c, ldc);
          }
        }
      }
      if (kern.amx) amx_detail::tile_release();
    }
  }
}

#endif  // ATTN_BF16_TILES

}  // namespace

void bf16_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  if (M <= 0 || N <= 0) return;
#if ATTN_BF16_TILES
  const Kernel* kern = K > 0 ? choose_kernel() : nullptr;
  if (kern) {
    run(*kern, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C, ldc);
    return;
  }
#endif
  sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void bf16_gemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                    int64_t lda, const float* B, int64_t ldb, const float* bias, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
#if ATTN_BF16_TILES
  const Kernel* kern = K > 0 ? choose_kernel() : nullptr;
  if (kern) {
    run(*kern, trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, 1.f, bias, C, ldc);
    return;
  }
#endif
  for (int64_t i = 0; i < M; ++i) std::memcpy(C + i * ldc, bias, sizeof(float) * static_cast<size_t>(N));
  sgemm(trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, 1.f, C, ldc);
}

void bf16_gemm_force_path(Bf16GemmPath path) { g_path.store(path, std::memory_order_relaxed); }

const char* bf16_gemm_path_name() {
#if ATTN_BF16_TILES
  if (const Kernel* kern = choose_kernel()) return kern->name;
#endif
  return "f32 (sgemm)";
}

}  // namespace attn::cpu
