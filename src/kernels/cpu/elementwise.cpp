// Element-wise training kernels (Highway, once per SIMD target via foreach_target.h): dropout
// mask generation with the counter-based hash of attn/core/rng.h vectorised over 64-bit
// lanes (alone, fused with ReLU, or with the residual add), ReLU, column sums (bias
// gradients), layer norm rows (double accumulators) and the Adam update (the scalar loop cannot vectorise: sqrtf may set errno). Results are bit-identical to the scalar formulas they replace.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/elementwise.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include <cmath>
#include <cstdint>

#include "attn/core/rng.h"
#include "attn/kernels/cpu/elementwise.h"

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace elementwise_impl {

// The top 24 bits of counter_random(seed, c) given mixed_seed = mix64(seed + golden):
// mix64(mixed_seed ^ c * K) >> 40. mix64's last step z ^ (z >> 31) leaves bits 40..63 alone,
// so it is skipped.
template <class DU64, class V>
HWY_INLINE V Hash24(DU64 du64, V c, V mixed_seed) {
  V z = hn::Xor(c * hn::Set(du64, 0xd1b54a32d192ed03ULL), mixed_seed);
  z = hn::Xor(z, hn::ShiftRight<30>(z)) * hn::Set(du64, 0xbf58476d1ce4e5b9ULL);
  z = hn::Xor(z, hn::ShiftRight<27>(z)) * hn::Set(du64, 0x94d049bb133111ebULL);
  return hn::ShiftRight<40>(z);
}

}  // namespace elementwise_impl

// Calls vec(i, m) for every full vector of elements [i, i + Lanes) with m the keep mask (as a
// float mask), then scalar(i, kept) for the tail. keep iff (r >> 40) >= thr, thr = ceil(p 2^24):
// the same as counter_uniform(...) >= p because (r >> 40) 2^-24 is exact in float.
template <class VecOp, class ScalarOp>
HWY_INLINE void ForEachKeep(int64_t n, uint64_t seed, uint64_t offset, double p, const VecOp& vec,
                            const ScalarOp& scalar) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Repartition<uint64_t, decltype(df)> du64;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t half = N / 2;
  const auto mixed_seed = hn::Set(du64, mix64(seed + 0x9e3779b97f4a7c15ULL));
  const auto thr_minus_1 = hn::Set(di, static_cast<int32_t>(std::ceil(p * 16777216.0)) - 1);
  // Counters advanced by adds: Highway's Iota builds its vector through memory, a
  // store-forwarding stall that cost more than the hash itself.
  auto c0 = hn::Iota(du64, offset);
  auto c1 = hn::Iota(du64, offset + static_cast<uint64_t>(half));
  const auto step = hn::Set(du64, static_cast<uint64_t>(N));
  for (; i + N <= n; i += N, c0 = hn::Add(c0, step), c1 = hn::Add(c1, step)) {
    const auto r0 = elementwise_impl::Hash24(du64, c0, mixed_seed);
    const auto r1 = elementwise_impl::Hash24(du64, c1, mixed_seed);
    // The low 32-bit halves of the 64-bit lanes, in order: the 24-bit values as i32.
    const auto r = hn::BitCast(di, hn::ConcatEven(du32, hn::BitCast(du32, r1), hn::BitCast(du32, r0)));
    vec(i, hn::RebindMask(df, hn::Gt(r, thr_minus_1)));
  }
#endif
  for (; i < n; ++i) scalar(i, static_cast<uint8_t>(counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p));
}

void DropoutForwardImpl(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, uint8_t* HWY_RESTRICT keep,
                        int64_t n, uint64_t seed, uint64_t offset, double p, float scale) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const auto vscale = hn::Set(df, scale);
  const auto one_i = hn::Set(di, 1);
  ForEachKeep(
      n, seed, offset, p,
      [&](int64_t i, auto m) {
        // y = x * (keep * scale), as the scalar formula (x * 0 keeps the sign and NaN of x * 0).
        hn::StoreU(hn::Mul(hn::LoadU(df, x + i), hn::IfThenElseZero(m, vscale)), df, y + i);
        hn::StoreU(hn::DemoteTo(d8, hn::IfThenElseZero(hn::RebindMask(di, m), one_i)), d8, keep + i);
      },
      [&](int64_t i, uint8_t kept) {
        keep[i] = kept;
        y[i] = x[i] * (static_cast<float>(kept) * scale);
      });
}

// y = res + x * (keep * scale): the residual add after dropout in one pass.
void DropoutAddForwardImpl(const float* HWY_RESTRICT res, const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
                           uint8_t* HWY_RESTRICT keep, int64_t n, uint64_t seed, uint64_t offset, double p,
                           float scale) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const auto vscale = hn::Set(df, scale);
  const auto one_i = hn::Set(di, 1);
  ForEachKeep(
      n, seed, offset, p,
      [&](int64_t i, auto m) {
        const auto dropped = hn::Mul(hn::LoadU(df, x + i), hn::IfThenElseZero(m, vscale));
        hn::StoreU(hn::Add(hn::LoadU(df, res + i), dropped), df, y + i);
        hn::StoreU(hn::DemoteTo(d8, hn::IfThenElseZero(hn::RebindMask(di, m), one_i)), d8, keep + i);
      },
      [&](int64_t i, uint8_t kept) {
        keep[i] = kept;
        y[i] = res[i] + x[i] * (static_cast<float>(kept) * scale);
      });
}

// y = relu(x) * (keep * scale): ReLU then dropout in one pass, no mask kept (y > 0 exactly where
// both x > 0 and the element is kept). y may be x (in place: element i is read before written).
void ReluDropoutForwardImpl(const float* x, float* y, int64_t n, uint64_t seed, uint64_t offset, double p,
                            float scale) {
  const hn::ScalableTag<float> df;
  const auto vscale = hn::Set(df, scale);
  const auto zero = hn::Zero(df);
  ForEachKeep(
      n, seed, offset, p,
      [&](int64_t i, auto m) {
        const auto v = hn::LoadU(df, x + i);
        hn::StoreU(hn::Mul(hn::IfThenElseZero(hn::Gt(v, zero), v), hn::IfThenElseZero(m, vscale)), df, y + i);
      },
      [&](int64_t i, uint8_t kept) { y[i] = (x[i] > 0 ? x[i] : 0.f) * (static_cast<float>(kept) * scale); });
}

// dx (+)= dy * (y > 0 ? scale : 0)
void ReluDropoutBackwardImpl(const float* HWY_RESTRICT y, const float* HWY_RESTRICT dy, float* HWY_RESTRICT dx,
                             int64_t n, float scale, bool accumulate) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto zero = hn::Zero(df);
  const auto vscale = hn::Set(df, scale);
  for (; i + N <= n; i += N) {
    auto v = hn::Mul(hn::LoadU(df, dy + i), hn::IfThenElseZero(hn::Gt(hn::LoadU(df, y + i), zero), vscale));
    if (accumulate) v = hn::Add(hn::LoadU(df, dx + i), v);
    hn::StoreU(v, df, dx + i);
  }
#endif
  for (; i < n; ++i) {
    const float v = dy[i] * (y[i] > 0 ? scale : 0.f);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

// Over columns [0, cols) of rows of stride ld: dz[r, j] = dy[r, j] * (y[r, j] > 0 ? scale : 0)
// and db[j] (+)= sum over rows r (in order) of dz[r, j].
// dz may be dy (in place: element i is read before written).
void ReluDropoutBackwardBiasImpl(const float* HWY_RESTRICT y, const float* dy, float* dz, float* HWY_RESTRICT db,
                                 int64_t ld, int64_t rows, int64_t cols, float scale, bool accumulate) {
  if (!accumulate)
    for (int64_t j = 0; j < cols; ++j) db[j] = 0.f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * ld;
    const float* gr = dy + r * ld;
    float* zr = dz + r * ld;
    int64_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    const hn::ScalableTag<float> df;
    const int64_t N = static_cast<int64_t>(hn::Lanes(df));
    const auto zero = hn::Zero(df);
    const auto vscale = hn::Set(df, scale);
    for (; j + N <= cols; j += N) {
      const auto v = hn::Mul(hn::LoadU(df, gr + j), hn::IfThenElseZero(hn::Gt(hn::LoadU(df, yr + j), zero), vscale));
      hn::StoreU(v, df, zr + j);
      hn::StoreU(hn::Add(hn::LoadU(df, db + j), v), df, db + j);
    }
#endif
    for (; j < cols; ++j) {
      const float v = gr[j] * (yr[j] > 0 ? scale : 0.f);
      zr[j] = v;
      db[j] += v;
    }
  }
}

// dst[j] (+)= sum over rows r (in order) of src[r, j] (row stride ld).
void SumRowsImpl(const float* HWY_RESTRICT src, int64_t ld, float* HWY_RESTRICT dst, int64_t rows, int64_t cols,
                 bool accumulate) {
  if (!accumulate)
    for (int64_t j = 0; j < cols; ++j) dst[j] = 0.f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * ld;
    int64_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    const hn::ScalableTag<float> df;
    const int64_t N = static_cast<int64_t>(hn::Lanes(df));
    for (; j + N <= cols; j += N) hn::StoreU(hn::Add(hn::LoadU(df, dst + j), hn::LoadU(df, s + j)), df, dst + j);
#endif
    for (; j < cols; ++j) dst[j] += s[j];
  }
}

// Layer norm parameter gradients, rows in order: dw[j] += float(dy xhat) (xhat in double),
// db[j] += dy (dw or db may be null).
void LayerNormBackwardWbImpl(const float* HWY_RESTRICT x, const float* HWY_RESTRICT dy, int64_t ld,
                             const double* HWY_RESTRICT stats, float* HWY_RESTRICT dw, float* HWY_RESTRICT db,
                             int64_t rows, int64_t E) {
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dfh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const double mu = stats[2 * r], rstd = stats[2 * r + 1];
    const float* xr = x + r * ld;
    const float* gr = dy + r * ld;
    int64_t j = 0;
    if (dw) {
#if HWY_TARGET != HWY_SCALAR
      const auto vmu = hn::Set(dd, mu), vrstd = hn::Set(dd, rstd);
      for (; j + N <= E; j += N) {
        const auto xh = hn::Mul(hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)), vmu), vrstd);
        const auto v = hn::DemoteTo(dfh, hn::Mul(hn::PromoteTo(dd, hn::LoadU(dfh, gr + j)), xh));
        hn::StoreU(hn::Add(hn::LoadU(dfh, dw + j), v), dfh, dw + j);
      }
#endif
      for (; j < E; ++j) dw[j] += static_cast<float>(gr[j] * ((xr[j] - mu) * rstd));
    }
    if (db) {
      j = 0;
#if HWY_TARGET != HWY_SCALAR
      const hn::ScalableTag<float> df;
      const int64_t NF = static_cast<int64_t>(hn::Lanes(df));
      for (; j + NF <= E; j += NF) hn::StoreU(hn::Add(hn::LoadU(df, db + j), hn::LoadU(df, gr + j)), df, db + j);
#endif
      for (; j < E; ++j) db[j] += gr[j];
    }
  }
}

void DropoutBackwardImpl(const float* HWY_RESTRICT dy, const uint8_t* HWY_RESTRICT keep, float* HWY_RESTRICT dx,
                         int64_t n, float scale, bool accumulate) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vscale = hn::Set(df, scale);
  for (; i + N <= n; i += N) {
    const auto k = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, keep + i)));
    auto v = hn::Mul(hn::LoadU(df, dy + i), hn::Mul(k, vscale));
    if (accumulate) v = hn::Add(hn::LoadU(df, dx + i), v);
    hn::StoreU(v, df, dx + i);
  }
#endif
  for (; i < n; ++i) {
    const float v = dy[i] * (static_cast<float>(keep[i]) * scale);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

void ReluForwardImpl(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto zero = hn::Zero(df);
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(df, x + i);
    hn::StoreU(hn::IfThenElseZero(hn::Gt(v, zero), v), df, y + i);
  }
#endif
  for (; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0.f;
}

void ReluBackwardImpl(const float* HWY_RESTRICT y, const float* HWY_RESTRICT dy, float* HWY_RESTRICT dx, int64_t n,
                      bool accumulate) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto zero = hn::Zero(df);
  const auto one = hn::Set(df, 1.f);
  for (; i + N <= n; i += N) {
    // dy * [y > 0] as a product, like the scalar formula (dy * 0 keeps its sign and NaN).
    auto v = hn::Mul(hn::LoadU(df, dy + i), hn::IfThenElseZero(hn::Gt(hn::LoadU(df, y + i), zero), one));
    if (accumulate) v = hn::Add(hn::LoadU(df, dx + i), v);
    hn::StoreU(v, df, dx + i);
  }
#endif
  for (; i < n; ++i) {
    const float v = dy[i] * (y[i] > 0 ? 1.f : 0.f);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

// Layer norm rows with double accumulators (as the scalar code, in a different order: sums
// agree to ~1e-16 relative, far below f32 rounding).
void LayerNormForwardImpl(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w, const float* HWY_RESTRICT b,
                          float* HWY_RESTRICT y, double* HWY_RESTRICT stats, int64_t rows, int64_t E, double eps) {
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dfh;  // half-width float vectors
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * E;
    float* yr = y + r * E;
    int64_t j = 0;
    double mu = 0, var = 0;
#if HWY_TARGET != HWY_SCALAR
    auto s0 = hn::Zero(dd), s1 = hn::Zero(dd);
    for (; j + 2 * N <= E; j += 2 * N) {
      s0 = hn::Add(s0, hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)));
      s1 = hn::Add(s1, hn::PromoteTo(dd, hn::LoadU(dfh, xr + j + N)));
    }
    mu = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
#endif
    for (; j < E; ++j) mu += xr[j];
    mu /= static_cast<double>(E);
    j = 0;
#if HWY_TARGET != HWY_SCALAR
    const auto vmu = hn::Set(dd, mu);
    s0 = hn::Zero(dd);
    s1 = hn::Zero(dd);
    for (; j + 2 * N <= E; j += 2 * N) {
      const auto d0 = hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)), vmu);
      const auto d1 = hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j + N)), vmu);
      s0 = hn::Add(s0, hn::Mul(d0, d0));
      s1 = hn::Add(s1, hn::Mul(d1, d1));
    }
    var = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
#endif
    for (; j < E; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    var /= static_cast<double>(E);
    const double rstd = 1.0 / std::sqrt(var + eps);
    stats[2 * r] = mu;
    stats[2 * r + 1] = rstd;
    j = 0;
#if HWY_TARGET != HWY_SCALAR
    const auto vrstd = hn::Set(dd, rstd);
    for (; j + N <= E; j += N) {
      auto v = hn::Mul(hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)), vmu), vrstd);
      if (w) v = hn::Mul(v, hn::PromoteTo(dd, hn::LoadU(dfh, w + j)));
      if (b) v = hn::Add(v, hn::PromoteTo(dd, hn::LoadU(dfh, b + j)));
      hn::StoreU(hn::DemoteTo(dfh, v), dfh, yr + j);
    }
#endif
    for (; j < E; ++j) {
      double v = (xr[j] - mu) * rstd;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = static_cast<float>(v);
    }
  }
}

void LayerNormBackwardDxImpl(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w, const float* HWY_RESTRICT dy,
                             const double* HWY_RESTRICT stats, float* HWY_RESTRICT dx, int64_t rows, int64_t E,
                             bool accumulate) {
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dfh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const double mu = stats[2 * r], rstd = stats[2 * r + 1];
    const float* xr = x + r * E;
    const float* gr = dy + r * E;
    float* dr = dx + r * E;
    double m1 = 0, m2 = 0;
    int64_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    const auto vmu = hn::Set(dd, mu), vrstd = hn::Set(dd, rstd);
    auto a1 = hn::Zero(dd), a2 = hn::Zero(dd);
    for (; j + N <= E; j += N) {
      const auto xh = hn::Mul(hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)), vmu), vrstd);
      auto dxh = hn::PromoteTo(dd, hn::LoadU(dfh, gr + j));
      if (w) dxh = hn::Mul(dxh, hn::PromoteTo(dd, hn::LoadU(dfh, w + j)));
      a1 = hn::Add(a1, dxh);
      a2 = hn::Add(a2, hn::Mul(dxh, xh));
    }
    m1 = hn::GetLane(hn::SumOfLanes(dd, a1));
    m2 = hn::GetLane(hn::SumOfLanes(dd, a2));
#endif
    for (; j < E; ++j) {
      const double xh = (xr[j] - mu) * rstd;
      const double dxh = w ? gr[j] * static_cast<double>(w[j]) : gr[j];
      m1 += dxh;
      m2 += dxh * xh;
    }
    m1 /= static_cast<double>(E);
    m2 /= static_cast<double>(E);
    j = 0;
#if HWY_TARGET != HWY_SCALAR
    const auto vm1 = hn::Set(dd, m1), vm2 = hn::Set(dd, m2);
    for (; j + N <= E; j += N) {
      const auto xh = hn::Mul(hn::Sub(hn::PromoteTo(dd, hn::LoadU(dfh, xr + j)), vmu), vrstd);
      auto dxh = hn::PromoteTo(dd, hn::LoadU(dfh, gr + j));
      if (w) dxh = hn::Mul(dxh, hn::PromoteTo(dd, hn::LoadU(dfh, w + j)));
      auto v = hn::DemoteTo(dfh, hn::Mul(vrstd, hn::Sub(hn::Sub(dxh, vm1), hn::Mul(xh, vm2))));
      if (accumulate) v = hn::Add(hn::LoadU(dfh, dr + j), v);
      hn::StoreU(v, dfh, dr + j);
    }
#endif
    for (; j < E; ++j) {
      const double xh = (xr[j] - mu) * rstd;
      const double dxh = w ? gr[j] * static_cast<double>(w[j]) : gr[j];
      const float v = static_cast<float>(rstd * (dxh - m1 - xh * m2));
      dr[j] = accumulate ? dr[j] + v : v;
    }
  }
}

void AdamUpdateImpl(float* HWY_RESTRICT p, const float* HWY_RESTRICT grad, float* HWY_RESTRICT m,
                    float* HWY_RESTRICT v, int64_t n, const AdamStepScalars& s) {
  int64_t j = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto b1 = hn::Set(df, s.beta1), b2 = hn::Set(df, s.beta2);
  const auto a1 = hn::Set(df, s.one_minus_beta1), a2 = hn::Set(df, s.one_minus_beta2);
  const auto eps = hn::Set(df, s.eps), wd = hn::Set(df, s.weight_decay), decay = hn::Set(df, s.decay);
  const auto step_size = hn::Set(df, s.step_size), bc2_sqrt = hn::Set(df, s.bc2_sqrt);
  for (; j + N <= n; j += N) {
    auto g = hn::LoadU(df, grad + j);
    auto pj = hn::LoadU(df, p + j);
    if (s.decoupled) pj = hn::Mul(pj, decay);
    else if (s.weight_decay != 0) g = hn::Add(g, hn::Mul(wd, pj));
    const auto mj = hn::Add(hn::Mul(hn::LoadU(df, m + j), b1), hn::Mul(a1, g));
    const auto vj = hn::Add(hn::Mul(hn::LoadU(df, v + j), b2), hn::Mul(a2, hn::Mul(g, g)));
    const auto denom = hn::Add(hn::Div(hn::Sqrt(vj), bc2_sqrt), eps);
    hn::StoreU(mj, df, m + j);
    hn::StoreU(vj, df, v + j);
    hn::StoreU(hn::Sub(pj, hn::Mul(step_size, hn::Div(mj, denom))), df, p + j);
  }
#endif
  for (; j < n; ++j) {
    float g = grad[j];
    if (s.decoupled) p[j] *= s.decay;
    else if (s.weight_decay != 0) g += s.weight_decay * p[j];
    m[j] = m[j] * s.beta1 + s.one_minus_beta1 * g;
    v[j] = v[j] * s.beta2 + s.one_minus_beta2 * (g * g);
    const float denom = std::sqrt(v[j]) / s.bc2_sqrt + s.eps;
    p[j] -= s.step_size * (m[j] / denom);
  }
}

}  // namespace attn::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::cpu {

HWY_EXPORT(DropoutForwardImpl);
HWY_EXPORT(DropoutBackwardImpl);
HWY_EXPORT(ReluForwardImpl);
HWY_EXPORT(ReluBackwardImpl);
HWY_EXPORT(AdamUpdateImpl);
HWY_EXPORT(LayerNormForwardImpl);
HWY_EXPORT(LayerNormBackwardDxImpl);
HWY_EXPORT(DropoutAddForwardImpl);
HWY_EXPORT(ReluDropoutForwardImpl);
HWY_EXPORT(ReluDropoutBackwardImpl);
HWY_EXPORT(SumRowsImpl);
HWY_EXPORT(ReluDropoutBackwardBiasImpl);
HWY_EXPORT(LayerNormBackwardWbImpl);

void dropout_add_forward(const float* res, const float* x, float* y, uint8_t* keep, int64_t n, uint64_t seed,
                         uint64_t offset, double p, float scale) {
  HWY_DYNAMIC_DISPATCH(DropoutAddForwardImpl)(res, x, y, keep, n, seed, offset, p, scale);
}

void relu_dropout_forward(const float* x, float* y, int64_t n, uint64_t seed, uint64_t offset, double p,
                          float scale) {
  HWY_DYNAMIC_DISPATCH(ReluDropoutForwardImpl)(x, y, n, seed, offset, p, scale);
}

void relu_dropout_backward(const float* y, const float* dy, float* dx, int64_t n, float scale, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(ReluDropoutBackwardImpl)(y, dy, dx, n, scale, accumulate);
}

void relu_dropout_backward_bias(const float* y, const float* dy, float* dz, float* db, int64_t ld, int64_t rows,
                                int64_t cols, float scale, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(ReluDropoutBackwardBiasImpl)(y, dy, dz, db, ld, rows, cols, scale, accumulate);
}

void sum_rows(const float* src, int64_t ld, float* dst, int64_t rows, int64_t cols, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(SumRowsImpl)(src, ld, dst, rows, cols, accumulate);
}

void layer_norm_backward_wb(const float* x, const float* dy, int64_t ld, const double* stats, float* dw, float* db,
                            int64_t rows, int64_t E) {
  HWY_DYNAMIC_DISPATCH(LayerNormBackwardWbImpl)(x, dy, ld, stats, dw, db, rows, E);
}

void dropout_forward(const float* x, float* y, uint8_t* keep, int64_t n, uint64_t seed, uint64_t offset,
                     double p, float scale) {
  HWY_DYNAMIC_DISPATCH(DropoutForwardImpl)(x, y, keep, n, seed, offset, p, scale);
}

void dropout_backward(const float* dy, const uint8_t* keep, float* dx, int64_t n, float scale, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(DropoutBackwardImpl)(dy, keep, dx, n, scale, accumulate);
}

void relu_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(ReluForwardImpl)(x, y, n); }

void relu_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(ReluBackwardImpl)(y, dy, dx, n, accumulate);
}

void layer_norm_forward(const float* x, const float* w, const float* b, float* y, double* stats, int64_t rows,
                        int64_t E, double eps) {
  HWY_DYNAMIC_DISPATCH(LayerNormForwardImpl)(x, w, b, y, stats, rows, E, eps);
}

void layer_norm_backward_dx(const float* x, const float* w, const float* dy, const double* stats, float* dx,
                            int64_t rows, int64_t E, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(LayerNormBackwardDxImpl)(x, w, dy, stats, dx, rows, E, accumulate);
}

void adam_update(float* p, const float* grad, float* m, float* v, int64_t n, const AdamStepScalars& s) {
  HWY_DYNAMIC_DISPATCH(AdamUpdateImpl)(p, grad, m, v, n, s);
}

}  // namespace attn::cpu
#endif  // HWY_ONCE
