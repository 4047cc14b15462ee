// Fused attention forward (FlashAttention-2, Dao 2023, Alg. 1) on Highway with runtime dispatch.
//
// Layout trick: scores are computed transposed, St[c][r] = k_c · q_r, with the query block
// packed once as Qt[d][r] (r along SIMD lanes) and key elements broadcast straight from the
// K rows. So K is never packed or transposed, and the online softmax (running max m_r, sum
// l_r) runs across the rows in the lanes: no horizontal reductions. O[r][:] += P[r][c] v_c
// then broadcasts P and streams V rows (Dv along lanes). Softmax works in base 2: scores are
// scaled by scale*log2(e) and exponentiated with exp2 (below), lse converted back at the end.
//
// Grouped-query heads: the rows of a block are (query position i, head g of the group),
// flattened as i*G + g, so every head of a group shares each K/V tile and a causal block
// still spans few positions.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/flash_attention_fwd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/gemm.h"
#include "kernels/cpu/flash_attention_internal.h"
#include "kernels/cpu/transpose4-inl.h"

#include <omp.h>

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using kernels::AttentionProblem;
using namespace flash_detail;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr int kN = static_cast<int>(HWY_LANES(float));
constexpr int kBr = kQueryVecs * kN;              // query rows per block
constexpr int kKeyRegs = kN >= 16 ? 8 : 4;        // keys per Q·Kᵀ micro-tile (x kQueryVecs accumulators)
constexpr int kPvRows = kN >= 16 ? 6 : 3;         // rows per P·V micro-tile
constexpr int kPvVecs = 4;                        // Dv vectors per P·V micro-tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// 2^x for x <= 0 (clamped to [-127, 127]): x = n + f, |f| <= 1/2, 2^f by a degree-6 polynomial
// (weighted least-squares fit on Chebyshev nodes; approximation error 1.9e-9 relative, f32
// evaluation error <= 1.0e-7 relative, i.e. < 2 ulp, checked by FlashExp2.Accuracy), times 2^n
// built in the exponent bits. x <= -126.5 gives 0 (also for -inf), so masked scores vanish.
template <class V>
HWY_INLINE V Exp2(DF d, V x) {
  const hn::RebindToSigned<DF> di;
  x = hn::Min(hn::Max(x, hn::Set(d, -127.f)), hn::Set(d, 127.f));
  const V n = hn::Round(x);
  const V f = x - n;
  V p = hn::Set(d, 1.534580555522459e-4f);
  p = hn::MulAdd(p, f, hn::Set(d, 1.3399931167517682e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 9.618488981091156e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.5503287771262615e-2f));
  p = hn::MulAdd(p, f, hn::Set(d, 0.24022646890412522f));
  p = hn::MulAdd(p, f, hn::Set(d, 0.6931472057371679f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0000000005541962f));
  const auto e = hn::ShiftLeft<23>(hn::ConvertTo(di, n) + hn::Set(di, 127));
  return p * hn::BitCast(d, e);
}

void Exp2Array(const float* x, float* y, int64_t n) {
  const DF d;
  int64_t i = 0;
  for (; i + kN <= n; i += kN) hn::StoreU(Exp2(d, hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) {
    HWY_ALIGN float buf[kN] = {};
    buf[0] = x[i];
    y[i] = hn::GetLane(Exp2(d, hn::Load(d, buf)));
  }
}

// ---------------------------------------------------------------- f32 tile kernels

// Rows r .. r + 3 of Qt: 4 x 4 tiles transposed in 128-bit registers (the scalar target
// has none: element by element there).
HWY_INLINE void PackQt4(const float* const* rows, const float* row_mul, int r, int64_t D, float* qt) {
#if HWY_TARGET == HWY_SCALAR
  for (int64_t dd = 0; dd < D; ++dd)
    for (int u = 0; u < 4; ++u) qt[dd * kBr + r + u] = rows[r + u][dd] * row_mul[r + u];
#else
  const hn::FixedTag<float, 4> d4;
  const auto m0 = hn::Set(d4, row_mul[r]), m1 = hn::Set(d4, row_mul[r + 1]),
             m2 = hn::Set(d4, row_mul[r + 2]), m3 = hn::Set(d4, row_mul[r + 3]);
  int64_t dd = 0;
  for (; dd + 4 <= D; dd += 4) {
    const auto a = hn::Mul(hn::LoadU(d4, rows[r] + dd), m0);
    const auto b = hn::Mul(hn::LoadU(d4, rows[r + 1] + dd), m1);
    const auto c = hn::Mul(hn::LoadU(d4, rows[r + 2] + dd), m2);
    const auto e = hn::Mul(hn::LoadU(d4, rows[r + 3] + dd), m3);
    simd4::StoreTransposed(a, b, c, e, qt + dd * kBr + r, kBr);
  }
  for (; dd < D; ++dd)
    for (int u = 0; u < 4; ++u) qt[dd * kBr + r + u] = rows[r + u][dd] * row_mul[r + u];
#endif
}

// Qt[d][r] = q_r[d] * row_mul[r] for r < nrows; lanes past nrows keep what they held (the
// scratch is zeroed once). At short sequences this packing costs as much as Q·Kᵀ itself when
// done element by element, hence the 4 x 4 register transposes.
void PackQt(const float* const* rows, const float* row_mul, int nrows, int64_t D, float* qt) {
  int r = 0;
  for (; r + 4 <= nrows; r += 4) PackQt4(rows, row_mul, r, D, qt);
  for (; r < nrows; ++r) {
    const float* src = rows[r];
    const float mul = row_mul[r];
    for (int64_t dd = 0; dd < D; ++dd) qt[dd * kBr + r] = src[dd] * mul;
  }
}

// st[c][:] for RK keys x QV query vectors: broadcast k_c[d], stream Qt[d][:].
template <int RK, int QV>
HWY_INLINE void QkMicro(const float* HWY_RESTRICT qt, const float* HWY_RESTRICT k, int64_t ldk,
                        int64_t D, float* HWY_RESTRICT st) {
  const DF d;
  VF acc[RK][QV];
  for (int c = 0; c < RK; ++c)
    for (int v = 0; v < QV; ++v) acc[c][v] = hn::Zero(d);
  for (int64_t dd = 0; dd < D; ++dd) {
    VF qv[QV];
    for (int v = 0; v < QV; ++v) qv[v] = hn::Load(d, qt + dd * kBr + v * kN);
    for (int c = 0; c < RK; ++c) {
      const VF kb = hn::Set(d, k[c * ldk + dd]);
      for (int v = 0; v < QV; ++v) acc[c][v] = hn::MulAdd(kb, qv[v], acc[c][v]);
    }
  }
  for (int c = 0; c < RK; ++c)
    for (int v = 0; v < QV; ++v) hn::Store(acc[c][v], d, st + c * kBr + v * kN);
}

template <int QV>
void QkPackedQv(const float* qt, const float* k, int64_t ldk, int nk, int64_t D, float* st) {
  int c = 0;
  for (; c + kKeyRegs <= nk; c += kKeyRegs)
    QkMicro<kKeyRegs, QV>(qt, k + c * ldk, ldk, D, st + c * kBr);
  const float* kc = k + c * ldk;
  float* sc = st + c * kBr;
  switch (nk - c) {
    case 0: break;
    case 1: QkMicro<1, QV>(qt, kc, ldk, D, sc); break;
    case 2: QkMicro<2, QV>(qt, kc, ldk, D, sc); break;
    case 3: QkMicro<3, QV>(qt, kc, ldk, D, sc); break;
    case 4: QkMicro<4, QV>(qt, kc, ldk, D, sc); break;
    case 5: if constexpr (kKeyRegs > 5) QkMicro<5, QV>(qt, kc, ldk, D, sc); break;
    case 6: if constexpr (kKeyRegs > 6) QkMicro<6, QV>(qt, kc, ldk, D, sc); break;
    case 7: if constexpr (kKeyRegs > 7) QkMicro<7, QV>(qt, kc, ldk, D, sc); break;
  }
}

// Scores of a K tile against the packed query block, transposed: st[c][r], c < nk.
void QkPacked(const float* qt, int nqv, const float* k, int64_t ldk, int nk, int64_t D,
              float* st) {
  static_assert(kQueryVecs == 3, "QkPacked handles up to 3 query vectors");
  switch (nqv) {
    case 1: QkPackedQv<1>(qt, k, ldk, nk, D, st); break;
    case 2: QkPackedQv<2>(qt, k, ldk, nk, D, st); break;
    default: QkPackedQv<3>(qt, k, ldk, nk, D, st); break;
  }
}

// Few query rows (decode): dot products along d, 4 keys at a time for independent chains.
// Needs D % kN == 0; rows[r] are the (normalised) query rows, contiguous.
// Decode streams K and V from memory once: while scoring keys c..c+3, prefetch K rows 32 keys
// ahead and the V rows of these keys (P·V reads them next).
HWY_INLINE void PrefetchRows(const float* base, int64_t ld, int64_t D) {
  for (int u = 0; u < 4; ++u)
    for (int64_t e = 0; e < D; e += 16) __builtin_prefetch(base + u * ld + e);
}

template <int R>
void QkDirectR(const float* const* q, const float* k, int64_t ldk, int nk, int64_t D, float* st,
               const float* v, int64_t ldv, int64_t Dv) {
  const DF d;
  int c = 0;
  for (; c + 4 <= nk; c += 4) {
    PrefetchRows(k + (c + 32) * ldk, ldk, D);
    PrefetchRows(v + c * ldv, ldv, Dv);
    VF acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < 4; ++u) acc[r][u] = hn::Zero(d);
    for (int64_t dd = 0; dd < D; dd += kN) {
      VF kv[4];
      for (int u = 0; u < 4; ++u) kv[u] = hn::LoadU(d, k + (c + u) * ldk + dd);
      for (int r = 0; r < R; ++r) {
        const VF qv = hn::LoadU(d, q[r] + dd);
        for (int u = 0; u < 4; ++u) acc[r][u] = hn::MulAdd(qv, kv[u], acc[r][u]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < 4; ++u) st[(c + u) * kBr + r] = hn::GetLane(hn::SumOfLanes(d, acc[r][u]));
  }
  for (; c < nk; ++c) {
    VF acc[R];
    for (int r = 0; r < R; ++r) acc[r] = hn::Zero(d);
    for (int64_t dd = 0; dd < D; dd += kN) {
      const VF kv = hn::LoadU(d, k + c * ldk + dd);
      for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(hn::LoadU(d, q[r] + dd), kv, acc[r]);
    }
    for (int r = 0; r < R; ++r) st[c * kBr + r] = hn::GetLane(hn::SumOfLanes(d, acc[r]));
  }
}

constexpr int kDirectMaxRows = 4;
void QkDirect(const float* const* q, int nrows, const float* k, int64_t ldk, int nk, int64_t D,
              float* st, const float* v, int64_t ldv, int64_t Dv) {
  switch (nrows) {
    case 1: QkDirectR<1>(q, k, ldk, nk, D, st, v, ldv, Dv); break;
    case 2: QkDirectR<2>(q, k, ldk, nk, D, st, v, ldv, Dv); break;
    case 3: QkDirectR<3>(q, k, ldk, nk, D, st, v, ldv, Dv); break;
    default: QkDirectR<4>(q, k, ldk, nk, D, st, v, ldv, Dv); break;
  }
}

// o[r][cv..cv+C) = alpha[r] * o + sum_{c<nk} pt[c][r] * v_c[...], R rows, C vectors.
template <int R, int C>
HWY_INLINE void PvMicro(const float* HWY_RESTRICT pt, int nk, const float* HWY_RESTRICT v,
                        int64_t ldv, const float* alpha, float* HWY_RESTRICT o, int64_t ldo,
                        bool fresh) {
  const DF d;
  VF acc[R][C];
  for (int r = 0; r < R; ++r) {
    const VF a = hn::Set(d, alpha[r]);
    for (int u = 0; u < C; ++u) acc[r][u] = fresh ? hn::Zero(d) : hn::Load(d, o + r * ldo + u * kN) * a;
  }
  for (int c = 0; c < nk; ++c) {
    VF vv[C];
    for (int u = 0; u < C; ++u) vv[u] = hn::LoadU(d, v + c * ldv + u * kN);
    for (int r = 0; r < R; ++r) {
      const VF pb = hn::Set(d, pt[c * kBr + r]);
      for (int u = 0; u < C; ++u) acc[r][u] = hn::MulAdd(pb, vv[u], acc[r][u]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) hn::Store(acc[r][u], d, o + r * ldo + u * kN);
}

template <int R>
void PvRows(const float* pt, int nk, const float* v, int64_t ldv, int64_t nvec,
            const float* alpha, float* o, int64_t ldo, bool fresh) {
  int64_t u = 0;
  for (; u + kPvVecs <= nvec; u += kPvVecs)
    PvMicro<R, kPvVecs>(pt, nk, v + u * kN, ldv, alpha, o + u * kN, ldo, fresh);
  switch (nvec - u) {
    case 0: break;
    case 1: PvMicro<R, 1>(pt, nk, v + u * kN, ldv, alpha, o + u * kN, ldo, fresh); break;
    case 2: PvMicro<R, 2>(pt, nk, v + u * kN, ldv, alpha, o + u * kN, ldo, fresh); break;
    default: PvMicro<R, 3>(pt, nk, v + u * kN, ldv, alpha, o + u * kN, ldo, fresh); break;
  }
}

// O block update with the tile's probabilities. v rows have stride ldv and at least
// nvec*kN readable elements (else the caller packs them). fresh: the block's first tile, O
// starts at 0 (not read: it need not be zeroed first).
void Pv(const float* pt, int nrows, int nk, const float* v, int64_t ldv, int64_t nvec,
        const float* alpha, float* o, int64_t ldo, bool fresh) {
  int r = 0;
  for (; r + kPvRows <= nrows; r += kPvRows)
    PvRows<kPvRows>(pt + r, nk, v, ldv, nvec, alpha + r, o + r * ldo, ldo, fresh);
  const float* p = pt + r;
  const float* a = alpha + r;
  float* orow = o + r * ldo;
  switch (nrows - r) {
    case 0: break;
    case 1: PvRows<1>(p, nk, v, ldv, nvec, a, orow, ldo, fresh); break;
    case 2: PvRows<2>(p, nk, v, ldv, nvec, a, orow, ldo, fresh); break;
    case 3: if constexpr (kPvRows > 3) PvRows<3>(p, nk, v, ldv, nvec, a, orow, ldo, fresh); break;
    case 4: if constexpr (kPvRows > 4) PvRows<4>(p, nk, v, ldv, nvec, a, orow, ldo, fresh); break;
    case 5: if constexpr (kPvRows > 5) PvRows<5>(p, nk, v, ldv, nvec, a, orow, ldo, fresh); break;
  }
}

// ---------------------------------------------------------------- the tiled driver

struct Row {
  int64_t b, h, i;
  int64_t lo, hi;      // visible keys [lo, hi)
  const void* q;       // query row
  float* out;          // output row
  float* lse;          // or null
  const float* bias;   // bias row (b, h, i, :) or null
};

// Per-thread scratch, 64-byte aligned.
struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> qt, st, o, m, l, alpha, vpack, qrows, knorm;
  hwy::AlignedFreeUniquePtr<uint16_t[]> qt2, vpack2;
  std::vector<const void*> qrow_ptrs;
  std::vector<float> row_mul;
  Scratch(int64_t D, int64_t ldo, bool bf16) {
    qt = hwy::AllocateAligned<float>(static_cast<size_t>(std::max<int64_t>(D, 1) * kBr));
    // Zeroed once: PackQt leaves lanes past a block's rows as they were (finite, never read
    // back into a result: every softmax and P·V step is per row).
    std::fill(qt.get(), qt.get() + std::max<int64_t>(D, 1) * kBr, 0.f);
    st = hwy::AllocateAligned<float>(static_cast<size_t>(kBc * kBr));
    o = hwy::AllocateAligned<float>(static_cast<size_t>(kBr * ldo));
    m = hwy::AllocateAligned<float>(kBr);
    l = hwy::AllocateAligned<float>(kBr);
    alpha = hwy::AllocateAligned<float>(kBr);
    vpack = hwy::AllocateAligned<float>(static_cast<size_t>(kBc * ldo));
    qrows = hwy::AllocateAligned<float>(static_cast<size_t>(kDirectMaxRows * std::max<int64_t>(D, 1)));
    knorm = hwy::AllocateAligned<float>(kBc);
    if (bf16) {
      qt2 = hwy::AllocateAligned<uint16_t>(static_cast<size_t>((D + 31) / 32 * 32 * kBr));
      vpack2 = hwy::AllocateAligned<uint16_t>(static_cast<size_t>(kBc * ldo));
    }
    qrow_ptrs.resize(kBr);
    row_mul.resize(kBr);
  }
};

template <class T>
inline float to_f32(T x);
template <>
inline float to_f32<float>(float x) { return x; }
template <>
inline float to_f32<bf16>(bf16 x) { return bf16_to_f32(x); }

// 1/|x| over D elements (0 for a zero row), for cosine scores.
template <class T>
float InvNorm(const T* x, int64_t D) {
  double s = 0;
  for (int64_t dd = 0; dd < D; ++dd) {
    const double t = to_f32(x[dd]);
    s += t * t;
  }
  return s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
}

template <class T>
struct Ctx {
  const AttentionProblem* p;
  const T *q, *k, *v;
  float *out, *lse;
  bool cosine;
  bool use_bf16;  // bf16 tiles (T = bf16)
  const Bf16Tiles* tiles;
  int64_t G, ldo; // group size, O tile row stride (Dv rounded up to the vector width)
  float score_mul;  // scale * log2(e)
};

// Computes rows [0, nrows) of one block against keys [ka, kb): running (m, l) and the
// unnormalised O in s (base-2 units).
template <class T>
void BlockForward(const Ctx<T>& c, const Row* rows, int nrows, int64_t ka, int64_t kb,
                  Scratch& s) {
  const DF d;
  const AttentionProblem& p = *c.p;
  const int64_t D = p.D, Dv = p.Dv;
  const int64_t b = rows[0].b, hk = p.kv_head(rows[0].h);
  const T* kbase = c.k + b * p.k_stride[0] + hk * p.k_stride[1];
  const T* vbase = c.v + b * p.v_stride[0] + hk * p.v_stride[1];
  const int64_t ldk = p.k_stride[2], ldv = p.v_stride[2];
  const int nqv = (nrows + kN - 1) / kN;
  const int64_t nvec = c.ldo / kN;

  for (int r = 0; r < kBr; ++r) {
    s.m[r] = kNegInf;
    s.l[r] = 0.f;
  }
  // The f32 P·V starts O at 0 on the first tile. The bf16 tiles read O: zero the block's rows
  // (whole 16-row groups, all they touch). With no tile at all O stays unread (m = −inf).
  if (c.use_bf16)
    std::fill(s.o.get(), s.o.get() + std::min(kBr, (nrows + 15) / 16 * 16) * c.ldo, 0.f);

  // Pack the query block (normalised for cosine).
  for (int r = 0; r < nrows; ++r) {
    // The score scale (times log2 e) is folded into q; cosine scales per key below instead.
    s.row_mul[r] = c.cosine ? InvNorm(static_cast<const T*>(rows[r].q), D) : c.score_mul;
    s.qrow_ptrs[r] = rows[r].q;
  }
  [[maybe_unused]] const bool direct = !c.use_bf16 && nrows <= kDirectMaxRows && D % kN == 0;
  [[maybe_unused]] const float* qdirect[kDirectMaxRows];
  if constexpr (std::is_same_v<T, float>) {
    if (direct) {
      for (int r = 0; r < nrows; ++r) {
        float* dst = s.qrows.get() + r * D;
        const float* src = static_cast<const float*>(rows[r].q);
        for (int64_t dd = 0; dd < D; ++dd) dst[dd] = src[dd] * s.row_mul[r];
        qdirect[r] = dst;
      }
    } else {
      PackQt(reinterpret_cast<const float* const*>(s.qrow_ptrs.data()), s.row_mul.data(), nrows,
             D, s.qt.get());
    }
  } else {
    if (c.use_bf16) {
      bf16_pack_qt(reinterpret_cast<const bf16* const*>(s.qrow_ptrs.data()), s.row_mul.data(),
                   nrows, kBr, D, s.qt2.get());
    }
  }

  // Visibility bounds over the block, for deciding whether a tile needs masking.
  int64_t max_lo = 0, min_hi = std::numeric_limits<int64_t>::max();
  HWY_ALIGN float lo_f[kBr], hi_f[kBr];
  for (int r = 0; r < kBr; ++r) {
    lo_f[r] = r < nrows ? static_cast<float>(rows[r].lo) : 0.f;
    hi_f[r] = r < nrows ? static_cast<float>(rows[r].hi) : 0.f;
    if (r < nrows) {
      max_lo = std::max(max_lo, rows[r].lo);
      min_hi = std::min(min_hi, rows[r].hi);
    }
  }
  const bool has_bias = p.bias != nullptr;
  const bool has_dropout = p.dropout > 0;
  const float keep_mul = has_dropout ? static_cast<float>(1.0 / (1.0 - p.dropout)) : 1.f;
  const VF neg_inf = hn::Set(d, kNegInf);
  float* st = s.st.get();

  for (int64_t j0 = ka; j0 < kb; j0 += kBc) {
    const int nk = static_cast<int>(std::min<int64_t>(kBc, kb - j0));
    const T* ktile = kbase + j0 * ldk;
    const T* vtile = vbase + j0 * ldv;

    // S = Q Kᵀ (transposed).
    if constexpr (std::is_same_v<T, float>) {
      if (direct)
        QkDirect(qdirect, nrows, ktile, ldk, nk, D, st, vtile, ldv, Dv);
      else
        QkPacked(s.qt.get(), nqv, ktile, ldk, nk, D, st);
    } else {
      c.tiles->qk(s.qt2.get(), kBr, nqv, ktile, ldk, nk, D, st);
    }

    // Cosine: scale by |k_c|^-1 (and the score scale); then bias, mask, the running max.
    if (c.cosine) {
      for (int cc = 0; cc < nk; ++cc) {
        const VF vm = hn::Set(d, c.score_mul * InvNorm(ktile + cc * ldk, D));
        for (int v = 0; v < nqv; ++v) hn::Store(hn::Load(d, st + cc * kBr + v * kN) * vm, d, st + cc * kBr + v * kN);
      }
    }
    if (has_bias) {
      for (int r = 0; r < nrows; ++r) {
        const float* br = rows[r].bias;
        const int64_t s3 = p.bias_stride[3];
        for (int cc = 0; cc < nk; ++cc) st[cc * kBr + r] += kLog2e * br[(j0 + cc) * s3];
      }
    }
    const bool need_mask = j0 < max_lo || j0 + nk > min_hi;
    if (need_mask) {
      for (int cc = 0; cc < nk; ++cc) {
        const VF jf = hn::Set(d, static_cast<float>(j0 + cc));
        for (int v = 0; v < nqv; ++v) {
          const auto masked = hn::Or(jf < hn::Load(d, lo_f + v * kN), jf >= hn::Load(d, hi_f + v * kN));
          float* sp = st + cc * kBr + v * kN;
          hn::Store(hn::IfThenElse(masked, neg_inf, hn::Load(d, sp)), d, sp);
        }
      }
    }

    // Online softmax across the rows in the lanes (Dao 2023, Alg. 1 lines 8-10).
    for (int v = 0; v < nqv; ++v) {
      VF mx = neg_inf;
      for (int cc = 0; cc < nk; ++cc) mx = hn::Max(mx, hn::Load(d, st + cc * kBr + v * kN));
      const VF m_old = hn::Load(d, s.m.get() + v * kN);
      const VF m_new = hn::Max(m_old, mx);
      // Rows that have seen no finite score keep m = -inf; subtract 0 instead so that
      // exp2(-inf - 0) = 0 and no inf - inf arises.
      const VF m_sub = hn::IfThenZeroElse(m_new == neg_inf, m_new);
      const VF alpha = Exp2(d, m_old - m_sub);
      VF sum = hn::Zero(d);
      for (int cc = 0; cc < nk; ++cc) {
        float* sp = st + cc * kBr + v * kN;
        const VF e = Exp2(d, hn::Load(d, sp) - m_sub);
        sum = sum + e;
        hn::Store(e, d, sp);
      }
      hn::Store(m_new, d, s.m.get() + v * kN);
      hn::Store(hn::MulAdd(hn::Load(d, s.l.get() + v * kN), alpha, sum), d, s.l.get() + v * kN);
      hn::Store(alpha, d, s.alpha.get() + v * kN);
    }
    if (has_dropout) {
      for (int r = 0; r < nrows; ++r) {
        const Row& row = rows[r];
        for (int cc = 0; cc < nk; ++cc) {
          float& e = st[cc * kBr + r];
          if (e == 0.f) continue;
          e = dropout_keep(p.seed, p.dropout, row.b, row.h, row.i, j0 + cc, p.Hq, p.Nq, p.Nk)
                  ? e * keep_mul
                  : 0.f;
        }
      }
    }

    // O = diag(alpha) O + P V.
    if constexpr (std::is_same_v<T, float>) {
      const float* vsrc = vtile;
      int64_t vld = ldv;
      if (Dv % kN != 0) {  // pad rows to whole vectors
        for (int cc = 0; cc < nk; ++cc) {
          float* dst = s.vpack.get() + cc * c.ldo;
          std::memcpy(dst, vtile + cc * ldv, Dv * sizeof(float));
          std::fill(dst + Dv, dst + c.ldo, 0.f);
        }
        vsrc = s.vpack.get();
        vld = c.ldo;
      }
      Pv(st, nrows, nk, vsrc, vld, nvec, s.alpha.get(), s.o.get(), c.ldo, j0 == ka);
    } else {
      c.tiles->pv(st, kBr, nrows, nk, vtile, ldv, Dv, s.alpha.get(), s.o.get(), c.ldo, s.vpack2.get());
    }
  }
}

// Writes out = O / l and lse for the rows of a finished block.
void FinishRows(const Row* rows, int nrows, const float* m, const float* l, const float* o,
                int64_t ldo, int64_t Dv) {
  const DF d;
  for (int r = 0; r < nrows; ++r) {
    float* out = rows[r].out;
    if (m[r] == kNegInf || !(l[r] > 0.f)) {
      std::fill(out, out + Dv, 0.f);
      if (rows[r].lse) *rows[r].lse = kNegInf;
      continue;
    }
    const float inv = 1.f / l[r];
    const VF vinv = hn::Set(d, inv);
    const float* orow = o + r * ldo;
    int64_t e = 0;
    for (; e + kN <= Dv; e += kN) hn::StoreU(hn::Load(d, orow + e) * vinv, d, out + e);
    for (; e < Dv; ++e) out[e] = orow[e] * inv;
    if (rows[r].lse) *rows[r].lse = (m[r] + std::log2(l[r])) * kLn2;
  }
}

// Rows of block rb of (b, kv head hk): flattened f = i*G + g.
template <class T>
int MakeRows(const Ctx<T>& c, int64_t b, int64_t hk, int64_t rb, Row* rows) {
  const AttentionProblem& p = *c.p;
  const int64_t G = c.G, total = p.Nq * G;
  const int64_t f0 = rb * kBr, f1 = std::min(total, f0 + kBr);
  int64_t kv_len = p.Nk;
  if (p.key_lengths) kv_len = std::clamp<int64_t>(p.key_lengths[b], 0, p.Nk);
  int n = 0;
  for (int64_t f = f0; f < f1; ++f, ++n) {
    Row& r = rows[n];
    r.b = b;
    r.i = G == 1 ? f : f / G;  // (no divisions in the common case)
    r.h = G == 1 ? hk : hk * G + f % G;
    const int64_t pos = r.i + p.query_offset;
    r.lo = 0;
    r.hi = kv_len;
    if (p.causal) r.hi = std::min(r.hi, pos + 1);
    if (p.has_window) {
      r.lo = std::max(r.lo, pos - p.window_left);
      r.hi = std::min(r.hi, pos + p.window_right + 1);
    }
    r.lo = std::min(r.lo, kv_len);
    if (r.hi < r.lo) r.hi = r.lo;
    r.q = c.q + b * p.q_stride[0] + r.h * p.q_stride[1] + r.i * p.q_stride[2];
    r.out = c.out + b * p.o_stride[0] + r.h * p.o_stride[1] + r.i * p.o_stride[2];
    r.lse = c.lse ? c.lse + (b * p.Hq + r.h) * p.Nq + r.i : nullptr;
    r.bias = p.bias ? p.bias + b * p.bias_stride[0] + r.h * p.bias_stride[1] + r.i * p.bias_stride[2]
                    : nullptr;
  }
  return n;
}

template <class T>
void ForwardImpl(const Ctx<T>& c) {
  const AttentionProblem& p = *c.p;
  if (p.B == 0 || p.Hq == 0 || p.Nq == 0) return;
  const int64_t nrb = (p.Nq * c.G + kBr - 1) / kBr;
  const int64_t base_items = p.B * p.Hkv * nrb;
  const int threads = std::max(1, num_threads());
  // Few blocks (decode, one head): split the keys too, and merge by log-sum-exp.
  int64_t splits = 1;
  if (threads > 1 && base_items < 4 * threads) {
    splits = std::min<int64_t>((4 * threads + base_items - 1) / base_items, std::max<int64_t>(1, p.Nk / (4 * kBc)));
  }
  const int64_t items = base_items * splits;
  const int64_t Dv = p.Dv;
  // Partial results of split blocks: m, l [kBr] and O [kBr][ldo] per (block, split).
  const int64_t part_stride = kBr * (2 + c.ldo);
  std::vector<float> partial(splits > 1 ? static_cast<size_t>(items * part_stride) : 0);

#pragma omp parallel num_threads(threads)
  {
    Scratch s(p.D, c.ldo, c.use_bf16);
    if (c.tiles) c.tiles->begin();
    Row rows[kBr];
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      // Later query blocks first: with a causal mask they carry the most keys.
      const int64_t split = it % splits, blk = it / splits;
      const int64_t rb = nrb - 1 - blk % nrb, bh = blk / nrb;
      const int64_t b = bh / p.Hkv, hk = bh % p.Hkv;
      const int nrows = MakeRows(c, b, hk, rb, rows);
      int64_t kmin = std::numeric_limits<int64_t>::max(), kmax = 0;
      for (int r = 0; r < nrows; ++r) {
        if (rows[r].hi <= rows[r].lo) continue;
        kmin = std::min(kmin, rows[r].lo);
        kmax = std::max(kmax, rows[r].hi);
      }
      if (kmax <= kmin) kmin = kmax = 0;
      int64_t ka = kmin, kb = kmax;
      if (splits > 1) {
        const int64_t ntiles = (kmax - kmin + kBc - 1) / kBc;
        const int64_t per = (ntiles + splits - 1) / splits;
        ka = std::min(kmax, kmin + split * per * kBc);
        kb = std::min(kmax, ka + per * kBc);
      }
      BlockForward(c, rows, nrows, ka, kb, s);
      if (splits == 1) {
        FinishRows(rows, nrows, s.m.get(), s.l.get(), s.o.get(), c.ldo, Dv);
      } else {
        float* dst = partial.data() + it * part_stride;
        std::memcpy(dst, s.m.get(), kBr * sizeof(float));
        std::memcpy(dst + kBr, s.l.get(), kBr * sizeof(float));
        std::memcpy(dst + 2 * kBr, s.o.get(), nrows * c.ldo * sizeof(float));
      }
    }
    if (splits > 1) {
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < base_items; ++blk) {
        const int64_t rb = nrb - 1 - blk % nrb, bh = blk / nrb;
        const int nrows = MakeRows(c, bh / p.Hkv, bh % p.Hkv, rb, rows);
        // Merge the splits in order: m = max m_s, l = sum l_s 2^(m_s - m), O likewise.
        float* m = s.m.get();
        float* l = s.l.get();
        float* o = s.o.get();
        for (int r = 0; r < nrows; ++r) {
          float mr = kNegInf;
          for (int64_t sp = 0; sp < splits; ++sp)
            mr = std::max(mr, partial[(blk * splits + sp) * part_stride + r]);
          m[r] = mr;
          l[r] = 0.f;
          std::fill(o + r * c.ldo, o + r * c.ldo + Dv, 0.f);
          if (mr == kNegInf) continue;
          for (int64_t sp = 0; sp < splits; ++sp) {
            const float* src = partial.data() + (blk * splits + sp) * part_stride;
            if (src[r] == kNegInf) continue;
            const float w = std::exp2(src[r] - mr);
            l[r] += w * src[kBr + r];
            const float* os = src + 2 * kBr + r * c.ldo;
            for (int64_t e = 0; e < Dv; ++e) o[r * c.ldo + e] += w * os[e];
          }
        }
        FinishRows(rows, nrows, m, l, o, c.ldo, Dv);
      }
    }
    if (c.tiles) c.tiles->end();
  }
}

void ForwardF32(const AttentionProblem& p, const float* q, const float* k, const float* v,
                float* out, float* lse, bool cosine) {
  Ctx<float> c{&p, q, k, v, out, lse, cosine, false, nullptr, p.Hq / p.Hkv,
               (p.Dv + kN - 1) / kN * kN, static_cast<float>(p.scale) * kLog2e};
  if (c.ldo == 0) c.ldo = kN;
  ForwardImpl(c);
}

void ForwardBf16(const AttentionProblem& p, const bf16* q, const bf16* k, const bf16* v,
                 float* out, float* lse, bool cosine, const Bf16Tiles* tiles) {
  // The bf16 tiles write O rows in 16-float steps.
  Ctx<bf16> c{&p, q, k, v, out, lse, cosine, true, tiles, p.Hq / p.Hkv,
              std::max<int64_t>(16, (p.Dv + 15) / 16 * 16), static_cast<float>(p.scale) * kLog2e};
  c.ldo = (c.ldo + kN - 1) / kN * kN;
  ForwardImpl(c);
}

// The bf16 tiles assume 16-lane f32 vectors (AVX-512 query blocks).
bool Bf16TilesFit() { return kN == 16; }

}  // namespace attn::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::cpu {

HWY_EXPORT(ForwardF32);
HWY_EXPORT(ForwardBf16);
HWY_EXPORT(Exp2Array);
HWY_EXPORT(Bf16TilesFit);

namespace {
Bf16Path g_bf16_path = Bf16Path::best;
}

void flash_attention_forward(const kernels::AttentionProblem& p, const float* q, const float* k,
                             const float* v, float* out, float* lse, FlashScore score) {
  HWY_DYNAMIC_DISPATCH(ForwardF32)(p, q, k, v, out, lse, score == FlashScore::cosine);
}

void flash_attention_forward_bf16(const kernels::AttentionProblem& p, const bf16* q,
                                  const bf16* k, const bf16* v, float* out, float* lse,
                                  FlashScore score) {
  const flash_detail::Bf16Tiles* tiles =
      g_bf16_path == Bf16Path::f32 ? nullptr : flash_detail::bf16_tiles(g_bf16_path == Bf16Path::best);
  if (tiles && HWY_DYNAMIC_DISPATCH(Bf16TilesFit)()) {
    HWY_DYNAMIC_DISPATCH(ForwardBf16)(p, q, k, v, out, lse, score == FlashScore::cosine, tiles);
    return;
  }
  // Fallback: widen to f32 (contiguous copies) and run the f32 kernel.
  kernels::AttentionProblem pf = p;
  auto widen = [](const bf16* src, const int64_t* stride, int64_t B, int64_t H, int64_t N,
                  int64_t D, int64_t* new_stride) {
    std::vector<float> dst(static_cast<size_t>(B * H * N * D));
    new_stride[0] = H * N * D;
    new_stride[1] = N * D;
    new_stride[2] = D;
#pragma omp parallel for num_threads(std::max(1, num_threads()))
    for (int64_t bhn = 0; bhn < B * H * N; ++bhn) {
      const int64_t b = bhn / (H * N), h = bhn / N % H, n = bhn % N;
      const bf16* s = src + b * stride[0] + h * stride[1] + n * stride[2];
      for (int64_t e = 0; e < D; ++e) dst[bhn * D + e] = bf16_to_f32(s[e]);
    }
    return dst;
  };
  const auto qf = widen(q, p.q_stride, p.B, p.Hq, p.Nq, p.D, pf.q_stride);
  const auto kf = widen(k, p.k_stride, p.B, p.Hkv, p.Nk, p.D, pf.k_stride);
  const auto vf = widen(v, p.v_stride, p.B, p.Hkv, p.Nk, p.Dv, pf.v_stride);
  flash_attention_forward(pf, qf.data(), kf.data(), vf.data(), out, lse, score);
}

void project_queries(const kernels::AttentionProblem& p, const float* q, const float* w,
                     float* q_proj) {
  // One sgemm when q is a dense [B*Hq*Nq, D] matrix, else one per (batch, head).
  const bool dense = p.q_stride[2] == p.D && p.q_stride[1] == p.Nq * p.D &&
                     p.q_stride[0] == p.Hq * p.Nq * p.D;
  if (dense) {
    sgemm(false, false, p.B * p.Hq * p.Nq, p.Dk, p.D, 1.f, q, p.D, w, p.Dk, 0.f, q_proj, p.Dk);
    return;
  }
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h)
      sgemm(false, false, p.Nq, p.Dk, p.D, 1.f, q + b * p.q_stride[0] + h * p.q_stride[1],
            p.q_stride[2], w, p.Dk, 0.f, q_proj + (b * p.Hq + h) * p.Nq * p.Dk, p.Dk);
}

void flash_attention_forward_general(const kernels::AttentionProblem& p, const float* q,
                                     const float* w, const float* k, const float* v, float* out,
                                     float* lse) {
  std::vector<float> qp(static_cast<size_t>(p.B * p.Hq * p.Nq * p.Dk));
  project_queries(p, q, w, qp.data());
  kernels::AttentionProblem pp = p;
  pp.D = p.Dk;
  pp.q_stride[0] = p.Hq * p.Nq * p.Dk;
  pp.q_stride[1] = p.Nq * p.Dk;
  pp.q_stride[2] = p.Dk;
  flash_attention_forward(pp, qp.data(), k, v, out, lse, FlashScore::dot);
}

void attention_weights_from_lse(const kernels::AttentionProblem& p, const float* q,
                                const float* k, const float* lse, int64_t row_begin,
                                int64_t row_end, float* weights, FlashScore score) {
  if (row_end <= row_begin || p.Nk == 0) return;
  // A picture path: scores, their row max m and sum in double, so the weights are f32
  // roundings of exact ones (the forward's f32 lse alone carries ~|s| * 1e-7 absolute error,
  // which exp(s - lse) would turn into that much relative error). lse marks the empty rows.
  const int64_t R = row_end - row_begin, D = p.D;
  const bool cosine = score == FlashScore::cosine;
#pragma omp parallel num_threads(std::max(1, num_threads()))
  {
    std::vector<double> srow(static_cast<size_t>(p.Nk));
#pragma omp for schedule(dynamic, 4)
    for (int64_t row = 0; row < p.B * p.Hq * R; ++row) {
      const int64_t b = row / (p.Hq * R), h = row / R % p.Hq, i = row_begin + row % R;
      const int64_t hk = p.kv_head(h);
      float* w = weights + row * p.Nk;
      std::fill(w, w + p.Nk, 0.f);
      if (lse && lse[(b * p.Hq + h) * p.Nq + i] == -std::numeric_limits<float>::infinity()) continue;
      const float* qi = q + b * p.q_stride[0] + h * p.q_stride[1] + i * p.q_stride[2];
      double qn = 0;
      if (cosine)
        for (int64_t e = 0; e < D; ++e) qn += double(qi[e]) * qi[e];
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < p.Nk; ++j) {
        srow[j] = -std::numeric_limits<double>::infinity();
        if (!p.visible(b, i, j)) continue;
        const float* kj = k + b * p.k_stride[0] + hk * p.k_stride[1] + j * p.k_stride[2];
        double dot = 0, kn = 0;
        for (int64_t e = 0; e < D; ++e) dot += double(qi[e]) * kj[e];
        if (cosine) {
          for (int64_t e = 0; e < D; ++e) kn += double(kj[e]) * kj[e];
          dot = qn > 0 && kn > 0 ? dot / std::sqrt(qn * kn) : 0.0;
        }
        srow[j] = dot * p.scale + p.bias_at(b, h, i, j);
        m = std::max(m, srow[j]);
      }
      if (m == -std::numeric_limits<double>::infinity()) continue;
      // exp(s - m) / sum, never exp(s - (m + log sum)): when |m| is huge (1e30) m + log sum
      // rounds to m and a tie would get weights 1 instead of 1/2.
      double sum = 0;
      for (int64_t j = 0; j < p.Nk; ++j) sum += std::exp(srow[j] - m);
      for (int64_t j = 0; j < p.Nk; ++j) {
        double x = std::exp(srow[j] - m) / sum;
        if (p.dropout > 0 && x != 0)
          x = dropout_keep(p.seed, p.dropout, b, h, i, j, p.Hq, p.Nq, p.Nk) ? x / (1.0 - p.dropout) : 0.0;
        w[j] = static_cast<float>(x);
      }
    }
  }
}

std::vector<int64_t> flash_supported_targets() {
  std::vector<int64_t> out;
  for (int64_t t = hwy::SupportedTargets() & HWY_TARGETS; t != 0; t &= t - 1) out.push_back(t & -t);
  return out;
}

void flash_force_target(int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
}

const char* flash_target_name(int64_t target) { return hwy::TargetName(target); }

void flash_force_bf16_path(Bf16Path path) { g_bf16_path = path; }

const char* flash_bf16_path_name() {
  const flash_detail::Bf16Tiles* tiles =
      g_bf16_path == Bf16Path::f32 ? nullptr : flash_detail::bf16_tiles(g_bf16_path == Bf16Path::best);
  return tiles && HWY_DYNAMIC_DISPATCH(Bf16TilesFit)() ? tiles->name : "f32 fallback";
}

void flash_exp2(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Exp2Array)(x, y, n); }

}  // namespace attn::cpu
#endif  // HWY_ONCE
