// Blocked additive (Bahdanau) attention: projections through the BLAS, then the
// Nq × Nk × A tanh terms tile by tile (Highway, once per SIMD target via foreach_target.h),
// never stored. Forward: online softmax per query block. Backward: per key block as the
// FlashAttention-2 backward, with the chain rule through vₐᵀ tanh(·) recomputed in the tile.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/additive_attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/aligned_allocator.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "kernels/cpu/attention_tiles_bwd-inl.h"
#include "kernels/cpu/key_block_rows.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/core/rng.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/additive_attention.h"
#include "attn/kernels/cpu/gemm.h"

#ifndef ATTN_ADDITIVE_SHARED_
#define ATTN_ADDITIVE_SHARED_
namespace attn::cpu::additive {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // keys per tile (and the padding of Kpᵀ's rows)

struct Job {
  const kernels::AttentionProblem* p;
  const float* va;
  int64_t A;
  const float* qp;   // [B, Hq, Nq, A]
  const float* kpt;  // [B, Hkv, A, Nkp], zero past Nk
  int64_t nkp;
  const float* v;
  // forward
  float *out, *lse;
  // backward
  const float *lse_in, *dout, *delta;
  float* dqp_parts[64];  // per thread [B, Hq, Nq, A]
  float* dva_parts[64];  // per thread [A]
  int n_parts;
  float* dkp;  // [B, Hkv, Nk, A]
  float* dv;
  float* dbias;  // [B, Hq, Nq, Nk] or null
  // Rows whose |lse| is too large to rebuild P from (kOwnStatsLse): own_stats[r] = 1, and the
  // backward's own row max m and 1/l (a pre-pass over the keys) in row_m, row_inv_l.
  const uint8_t* own_stats;    // [B, Hq, Nq]
  float *row_m, *row_inv_l;    // [B, Hq, Nq]
  const int64_t* stat_blocks;  // (b·Hq + h)·n_qb + query block, for blocks holding such rows
  int64_t n_stat_blocks;
};

// P = exp(s − lse) from the forward's f32 lse is off by up to |lse|·2^-24 in the exponent;
// beyond |lse| = 128 such rows take m and l from the backward's own scores instead, as the
// flash backward does (flash_attention_bwd.cpp, kOwnStatsLse).
constexpr float kOwnStatsLse = 128.f;

}  // namespace attn::cpu::additive
#endif

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace additive_impl {

using additive::kBc;
using additive::kBr;
using tiles_bwd::pad_width;
using tiles_bwd::tile_gemm;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// s[i, j] = Σ_a va_a tanh(qp[i, a] + kpt[a, j]) for i < qn, j < kBc (the raw score). Not
// inlined (nor finish_scores): the backward's row-stats pre-pass and main pass must round
// these scores identically.
HWY_NOINLINE void additive_scores(int64_t qn, int64_t A, const float* HWY_RESTRICT qp, const float* HWY_RESTRICT kpt,
                     int64_t ldk, const float* HWY_RESTRICT va, float* HWY_RESTRICT s) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t i = 0; i < qn; ++i) {
    const float* qr = qp + i * A;
    for (int64_t jc = 0; jc < kBc; jc += 4 * L) {
      auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
      for (int64_t a = 0; a < A; ++a) {
        const auto qa = hn::Set(d, qr[a]);
        const auto w = hn::Set(d, va[a]);
        const float* kr = kpt + a * ldk + jc;
        a0 = hn::MulAdd(w, hn::Tanh(d, hn::Add(qa, hn::LoadU(d, kr))), a0);
        a1 = hn::MulAdd(w, hn::Tanh(d, hn::Add(qa, hn::LoadU(d, kr + L))), a1);
        a2 = hn::MulAdd(w, hn::Tanh(d, hn::Add(qa, hn::LoadU(d, kr + 2 * L))), a2);
        a3 = hn::MulAdd(w, hn::Tanh(d, hn::Add(qa, hn::LoadU(d, kr + 3 * L))), a3);
      }
      float* sr = s + i * kBc + jc;
      hn::StoreU(a0, d, sr);
      hn::StoreU(a1, d, sr + L);
      hn::StoreU(a2, d, sr + 2 * L);
      hn::StoreU(a3, d, sr + 3 * L);
    }
  }
}

// Whether every key of [j0, j0 + kn) is structurally visible to every row of [i0, i0 + qn)
// and there is no bias: then the tile needs no per-element masking.
bool tile_is_full(const kernels::AttentionProblem& p, int64_t b, int64_t i0, int64_t qn, int64_t j0,
                  int64_t kn) {
  const int64_t klen = p.key_lengths ? p.key_lengths[b] : p.Nk;
  bool full = kn == kBc && p.bias == nullptr && j0 + kn <= klen;
  if (p.causal && j0 + kn - 1 > i0 + p.query_offset) full = false;
  if (p.has_window && (j0 < i0 + qn - 1 + p.query_offset - p.window_left ||
                       j0 + kn - 1 > i0 + p.query_offset + p.window_right))
    full = false;
  return full;
}

// Raw scores → final scores: · scale + bias, −inf where hidden or past kn.
HWY_NOINLINE void finish_scores(const kernels::AttentionProblem& p, int64_t b, int64_t h, int64_t i0, int64_t qn,
                   int64_t j0, int64_t kn, bool full, float* s) {
  const float scale = static_cast<float>(p.scale);
  if (full) {
    for (int64_t e = 0; e < qn * kBc; ++e) s[e] *= scale;
    return;
  }
  for (int64_t i = 0; i < qn; ++i) {
    const int64_t gi = i0 + i;
    const float* brow =
        p.bias ? p.bias + b * p.bias_stride[0] + h * p.bias_stride[1] + gi * p.bias_stride[2] : nullptr;
    float* sr = s + i * kBc;
    for (int64_t j = 0; j < kBc; ++j) {
      const int64_t gj = j0 + j;
      sr[j] = (j >= kn || !p.visible(b, gi, gj))
                  ? kNegInf
                  : sr[j] * scale + (brow ? brow[gj * p.bias_stride[3]] : 0.f);
    }
  }
}

struct FwdScratch {
  hwy::AlignedFreeUniquePtr<float[]> s, vp, acc;
  explicit FwdScratch(int64_t Dvp)
      : s(hwy::AllocateAligned<float>(kBr * kBc)),
        vp(hwy::AllocateAligned<float>(kBc * Dvp)),
        acc(hwy::AllocateAligned<float>(kBr * Dvp)) {}
};

// Query block [i0, i0 + qn) of head h in batch b: online softmax over the visible key blocks.
void forward_unit(const additive::Job& job, int64_t b, int64_t h, int64_t i0, FwdScratch& sc) {
  const kernels::AttentionProblem& p = *job.p;
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t Nq = p.Nq, Nk = p.Nk, Dv = p.Dv, Dvp = pad_width(Dv), A = job.A;
  const int64_t qn = std::min(kBr, Nq - i0);
  const int64_t g = p.kv_head(h), bh = b * p.Hq + h;
  const bool dropout = p.dropout > 0.0;
  const float keep_scale = dropout ? static_cast<float>(1.0 / (1.0 - p.dropout)) : 1.f;

  // Keys any row of the block can see.
  const int64_t pmin = i0 + p.query_offset, pmax = i0 + qn - 1 + p.query_offset;
  int64_t j_lo = 0, j_hi = p.key_lengths ? std::min<int64_t>(p.key_lengths[b], Nk) - 1 : Nk - 1;
  if (p.causal) j_hi = std::min(j_hi, pmax);
  if (p.has_window) {
    j_lo = std::max(j_lo, pmin - p.window_left);
    j_hi = std::min(j_hi, pmax + p.window_right);
  }

  float m[kBr], l[kBr];
  for (int64_t i = 0; i < qn; ++i) m[i] = kNegInf, l[i] = 0.f;
  std::memset(sc.acc.get(), 0, sizeof(float) * kBr * Dvp);
  std::memset(sc.vp.get(), 0, sizeof(float) * kBc * Dvp);
  float* s = sc.s.get();
  const float* qp = job.qp + (bh * Nq + i0) * A;
  const float* kpt = job.kpt + (b * p.Hkv + g) * A * job.nkp;
  const float* vbase = job.v + b * p.v_stride[0] + g * p.v_stride[1];

  for (int64_t j0 = j_lo > 0 ? j_lo / kBc * kBc : 0; j0 <= j_hi; j0 += kBc) {
    const int64_t kn = std::min(kBc, Nk - j0);
    additive_scores(qn, A, qp, kpt + j0, job.nkp, job.va, s);
    finish_scores(p, b, h, i0, qn, j0, kn, tile_is_full(p, b, i0, qn, j0, kn), s);
    for (int64_t j = 0; j < kn; ++j) std::memcpy(sc.vp.get() + j * Dvp, vbase + (j0 + j) * p.v_stride[2], sizeof(float) * Dv);
    for (int64_t j = kn; j < kBc; ++j) std::memset(sc.vp.get() + j * Dvp, 0, sizeof(float) * Dvp);

    // Online softmax: rescale the running sum and accumulator by exp(m_old − m_new).
    for (int64_t i = 0; i < qn; ++i) {
      float* sr = s + i * kBc;
      auto vmax = hn::Set(d, kNegInf);
      for (int64_t j = 0; j < kBc; j += L) vmax = hn::Max(vmax, hn::LoadU(d, sr + j));
      const float m_new = std::max(m[i], hn::GetLane(hn::MaxOfLanes(d, vmax)));
      if (m_new == kNegInf) {  // nothing visible yet in this row
        std::memset(sr, 0, sizeof(float) * kBc);
        continue;
      }
      const auto vm = hn::Set(d, m_new);
      auto vsum = hn::Zero(d);
      for (int64_t j = 0; j < kBc; j += L) {
        const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, sr + j), vm));
        vsum = hn::Add(vsum, e);
        hn::StoreU(e, d, sr + j);
      }
      const float corr = m[i] == kNegInf ? 0.f : std::exp(m[i] - m_new);
      l[i] = l[i] * corr + hn::GetLane(hn::SumOfLanes(d, vsum));
      m[i] = m_new;
      if (corr != 1.f) {
        float* ar = sc.acc.get() + i * Dvp;
        for (int64_t c = 0; c < Dvp; ++c) ar[c] *= corr;
      }
      if (dropout)
        for (int64_t j = 0; j < kn; ++j)
          sr[j] *= dropout_keep(p.seed, p.dropout, b, h, i0 + i, j0 + j, p.Hq, Nq, Nk) ? keep_scale : 0.f;
    }
    tile_gemm(qn, Dvp, kn, s, kBc, 1, sc.vp.get(), Dvp, sc.acc.get(), Dvp, true);
  }

  for (int64_t i = 0; i < qn; ++i) {
    float* o = job.out + b * p.o_stride[0] + h * p.o_stride[1] + (i0 + i) * p.o_stride[2];
    float* lse = job.lse + bh * Nq + i0 + i;
    if (l[i] > 0.f) {
      const float inv = 1.f / l[i];
      for (int64_t c = 0; c < Dv; ++c) o[c] = sc.acc[i * Dvp + c] * inv;
      *lse = m[i] + std::log(l[i]);
    } else {
      std::memset(o, 0, sizeof(float) * Dv);
      *lse = kNegInf;
    }
  }
}

struct BwdScratch {
  hwy::AlignedFreeUniquePtr<float[]> buf;
  float *vt, *dv_acc, *dop, *pt, *pd, *dst, *dkpt, *dva_acc;
  BwdScratch(int64_t Dv, int64_t A) {
    const hn::ScalableTag<float> d;
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    const int64_t Dvp = pad_width(Dv);
    const int64_t sizes[] = {Dv * kBc, kBc * Dvp, kBr * Dvp, kBr * kBc, kBr * kBc, kBr * kBc, A * kBc, A * L};
    int64_t total = 0;
    for (int64_t s : sizes) total += pad_width(s);
    buf = hwy::AllocateAligned<float>(static_cast<size_t>(total));
    float* at = buf.get();
    float** ptrs[] = {&vt, &dv_acc, &dop, &pt, &pd, &dst, &dkpt, &dva_acc};
    for (int i = 0; i < 8; ++i) {
      *ptrs[i] = at;
      at += pad_width(sizes[i]);
    }
    std::memset(dva_acc, 0, sizeof(float) * A * L);
  }
};

// The row-stats pre-pass for query block qb of (b, h) = bh: for its own_stats rows,
// m = max_j s_ij and 1/l with l = Σ_j exp(s_ij − m) (in double), from the same tiles,
// additive_scores and finish_scores as backward_unit, so its s_ij are the very same floats.
void row_stats_block(const additive::Job& job, int64_t bh, int64_t qb, BwdScratch& sc) {
  const kernels::AttentionProblem& p = *job.p;
  const int64_t Nq = p.Nq, Nk = p.Nk, A = job.A;
  const int64_t b = bh / p.Hq, h = bh % p.Hq, g = p.kv_head(h);
  const int64_t i0 = qb * kBr, qn = std::min(kBr, Nq - i0);
  const float* qp = job.qp + (bh * Nq + i0) * A;
  constexpr double kNoKey = -std::numeric_limits<double>::infinity();
  double m[kBr], l[kBr];
  for (int64_t i = 0; i < qn; ++i) m[i] = kNoKey, l[i] = 0;
  for (int64_t j0 = 0; j0 < Nk; j0 += kBc) {
    const int64_t kn = std::min(kBc, Nk - j0);
    const RowRange rows = rows_seeing_key_block(p, b, j0, kn);
    if (rows.empty() || rows.hi < i0 || rows.lo >= i0 + qn) continue;
    const float* kpt = job.kpt + (b * p.Hkv + g) * A * job.nkp + j0;
    additive_scores(qn, A, qp, kpt, job.nkp, job.va, sc.pt);
    finish_scores(p, b, h, i0, qn, j0, kn, tile_is_full(p, b, i0, qn, j0, kn), sc.pt);
    for (int64_t i = 0; i < qn; ++i) {
      if (!job.own_stats[bh * Nq + i0 + i]) continue;
      const float* sr = sc.pt + i * kBc;
      double mx = m[i];
      for (int64_t j = 0; j < kn; ++j) mx = std::max(mx, double(sr[j]));
      if (mx == kNoKey) continue;
      double sum = m[i] == kNoKey ? 0.0 : l[i] * std::exp(m[i] - mx);
      for (int64_t j = 0; j < kn; ++j) sum += std::exp(double(sr[j]) - mx);
      m[i] = mx, l[i] = sum;
    }
  }
  for (int64_t i = 0; i < qn; ++i) {
    const int64_t r = bh * Nq + i0 + i;
    if (!job.own_stats[r]) continue;
    const bool seen = m[i] > kNoKey;  // else P = 0
    job.row_m[r] = seen ? static_cast<float>(m[i]) : 0.f;  // m is one of the f32 scores: exact
    job.row_inv_l[r] = seen ? static_cast<float>(1.0 / l[i]) : 0.f;
  }
}

// Key block kb of kv head g in batch b, all query heads of the group.
void backward_unit(const additive::Job& job, int64_t b, int64_t g, int64_t kb, float* dqp_part,
                   BwdScratch& sc) {
  const kernels::AttentionProblem& p = *job.p;
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t Nq = p.Nq, Nk = p.Nk, Dv = p.Dv, Dvp = pad_width(Dv), A = job.A;
  const int64_t j0 = kb * kBc, kn = std::min(kBc, Nk - j0);
  const float scale = static_cast<float>(p.scale);
  float* dkp_out = job.dkp + ((b * p.Hkv + g) * Nk + j0) * A;
  float* dv_out = job.dv + ((b * p.Hkv + g) * Nk + j0) * Dv;

  const RowRange rows = rows_seeing_key_block(p, b, j0, kn);
  const int64_t i_lo = rows.lo, i_hi = rows.hi;
  if (rows.empty()) {
    std::memset(dkp_out, 0, sizeof(float) * kn * A);
    std::memset(dv_out, 0, sizeof(float) * kn * Dv);
    return;
  }

  const float* kpt = job.kpt + (b * p.Hkv + g) * A * job.nkp + j0;
  const float* vbase = job.v + b * p.v_stride[0] + g * p.v_stride[1] + j0 * p.v_stride[2];
  std::memset(sc.vt, 0, sizeof(float) * Dv * kBc);
  for (int64_t j = 0; j < kn; ++j)
    for (int64_t c = 0; c < Dv; ++c) sc.vt[c * kBc + j] = vbase[j * p.v_stride[2] + c];
  std::memset(sc.dv_acc, 0, sizeof(float) * kBc * Dvp);
  std::memset(sc.dkpt, 0, sizeof(float) * A * kBc);
  std::memset(sc.dop, 0, sizeof(float) * kBr * Dvp);
  const bool dropout = p.dropout > 0.0;
  const float keep_scale = dropout ? static_cast<float>(1.0 / (1.0 - p.dropout)) : 1.f;
  const auto one = hn::Set(d, 1.f);

  for (int64_t h = g * p.group(); h < (g + 1) * p.group(); ++h) {
    const int64_t bh = b * p.Hq + h;
    for (int64_t i0 = i_lo / kBr * kBr; i0 <= i_hi; i0 += kBr) {
      const int64_t qn = std::min(kBr, Nq - i0);
      const float* qp = job.qp + (bh * Nq + i0) * A;
      const float* dobase = job.dout + (bh * Nq + i0) * Dv;
      for (int64_t i = 0; i < qn; ++i) std::memcpy(sc.dop + i * Dvp, dobase + i * Dv, sizeof(float) * Dv);

      // P = exp(s − lse), recomputed; rows with their own stats: P = exp(s − m) / l.
      additive_scores(qn, A, qp, kpt, job.nkp, job.va, sc.pt);
      finish_scores(p, b, h, i0, qn, j0, kn, tile_is_full(p, b, i0, qn, j0, kn), sc.pt);
      const float* lse_row = job.lse_in + bh * Nq + i0;
      for (int64_t i = 0; i < qn; ++i) {
        float* pr = sc.pt + i * kBc;
        if (!(lse_row[i] > kNegInf)) {
          std::memset(pr, 0, sizeof(float) * kBc);
          continue;
        }
        const int64_t r = bh * Nq + i0 + i;
        if (job.own_stats[r]) {
          const auto vm = hn::Set(d, job.row_m[r]);
          const auto vinv = hn::Set(d, job.row_inv_l[r]);
          for (int64_t j = 0; j < kBc; j += L)
            hn::StoreU(hn::Mul(hn::Exp(d, hn::Sub(hn::LoadU(d, pr + j), vm)), vinv), d, pr + j);
          continue;
        }
        const auto vl = hn::Set(d, lse_row[i]);
        for (int64_t j = 0; j < kBc; j += L) hn::StoreU(hn::Exp(d, hn::Sub(hn::LoadU(d, pr + j), vl)), d, pr + j);
      }

      // dP = dO Vᵀ; dS = P ∘ (dP − D_i) (dropout as in the flash backward), times scale: the
      // gradient of the raw score vₐᵀ tanh(·).
      tile_gemm(qn, kBc, Dv, sc.dop, Dvp, 1, sc.vt, kBc, sc.dst, kBc, false);
      const float* delta_row = job.delta + bh * Nq + i0;
      const float* pv = sc.pt;
      for (int64_t i = 0; i < qn; ++i) {
        float* dsr = sc.dst + i * kBc;
        const float* pr = sc.pt + i * kBc;
        if (!dropout) {
          for (int64_t j = 0; j < kBc; ++j) dsr[j] = pr[j] * (dsr[j] - delta_row[i]);
        } else {
          float* pdr = sc.pd + i * kBc;
          for (int64_t j = 0; j < kBc; ++j) {
            const bool keep = j < kn && pr[j] != 0.f &&
                              dropout_keep(p.seed, p.dropout, b, h, i0 + i, j0 + j, p.Hq, Nq, Nk);
            const float f = keep ? keep_scale : 0.f;
            pdr[j] = pr[j] * f;
            dsr[j] = pr[j] * (dsr[j] * f - delta_row[i]);
          }
        }
        if (job.dbias) std::memcpy(job.dbias + (bh * Nq + i0 + i) * Nk + j0, dsr, sizeof(float) * kn);
        for (int64_t j = 0; j < kBc; ++j) dsr[j] *= scale;
      }
      if (dropout) pv = sc.pd;
      tile_gemm(kn, Dvp, qn, pv, 1, kBc, sc.dop, Dvp, sc.dv_acc, Dvp, true);

      // Through tanh: dX = dS va (1 − t²); dQp_i += Σ_j dX, dKp_j += Σ_i dX, dva += Σ dS t.
      for (int64_t i = 0; i < qn; ++i) {
        if (!(lse_row[i] > kNegInf)) continue;
        const float* dsr = sc.dst + i * kBc;
        const float* qr = qp + i * A;
        float* dqr = dqp_part + (bh * Nq + i0 + i) * A;
        for (int64_t a = 0; a < A; ++a) {
          const auto qa = hn::Set(d, qr[a]);
          const auto vaa = hn::Set(d, job.va[a]);
          auto dva = hn::LoadU(d, sc.dva_acc + a * L);
          auto sum = hn::Zero(d);
          const float* kr = kpt + a * job.nkp;
          float* dkr = sc.dkpt + a * kBc;
          for (int64_t j = 0; j < kBc; j += L) {
            const auto t = hn::Tanh(d, hn::Add(qa, hn::LoadU(d, kr + j)));
            const auto gs = hn::LoadU(d, dsr + j);
            dva = hn::MulAdd(gs, t, dva);
            const auto dx = hn::Mul(hn::Mul(gs, vaa), hn::NegMulAdd(t, t, one));
            sum = hn::Add(sum, dx);
            hn::StoreU(hn::Add(hn::LoadU(d, dkr + j), dx), d, dkr + j);
          }
          hn::StoreU(dva, d, sc.dva_acc + a * L);
          dqr[a] += hn::GetLane(hn::SumOfLanes(d, sum));
        }
      }
    }
  }

  for (int64_t j = 0; j < kn; ++j) {
    for (int64_t a = 0; a < A; ++a) dkp_out[j * A + a] = sc.dkpt[a * kBc + j];
    std::memcpy(dv_out + j * Dv, sc.dv_acc + j * Dvp, sizeof(float) * Dv);
  }
}

}  // namespace additive_impl

void AdditiveForwardImpl(const additive::Job& job) {
  const kernels::AttentionProblem& p = *job.p;
  const int64_t n_qb = (p.Nq + additive::kBr - 1) / additive::kBr;
  const int64_t n_units = p.B * p.Hq * n_qb;
#pragma omp parallel
  {
    additive_impl::FwdScratch scratch(tiles_bwd::pad_width(p.Dv));
    // Units write disjoint rows: any schedule gives the same result.
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < n_units; ++u) {
      const int64_t qb = u % n_qb, bh = u / n_qb;
      additive_impl::forward_unit(job, bh / p.Hq, bh % p.Hq, qb * additive::kBr, scratch);
    }
  }
}

void AdditiveBackwardImpl(const additive::Job& job) {
  const kernels::AttentionProblem& p = *job.p;
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t n_kb = (p.Nk + additive::kBc - 1) / additive::kBc;
  const int64_t n_units = p.B * p.Hkv * n_kb;
#pragma omp parallel num_threads(job.n_parts)
  {
    const int tid = omp_get_thread_num();
    additive_impl::BwdScratch scratch(p.Dv, job.A);
    const int64_t n_qb = (p.Nq + additive::kBr - 1) / additive::kBr;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < job.n_stat_blocks; ++u)
      additive_impl::row_stats_block(job, job.stat_blocks[u] / n_qb, job.stat_blocks[u] % n_qb, scratch);
    // Static round-robin: the same units reach the same thread's dQp buffer in the same order.
#pragma omp for schedule(static, 1)
    for (int64_t u = 0; u < n_units; ++u) {
      const int64_t kb = u % n_kb, bg = u / n_kb;
      additive_impl::backward_unit(job, bg / p.Hkv, bg % p.Hkv, kb, job.dqp_parts[tid], scratch);
    }
    float* dva = job.dva_parts[tid];
    for (int64_t a = 0; a < job.A; ++a) {
      float acc = 0.f;
      for (int64_t e = 0; e < L; ++e) acc += scratch.dva_acc[a * L + e];
      dva[a] = acc;
    }
  }
}

}  // namespace attn::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::cpu {

HWY_EXPORT(AdditiveForwardImpl);
HWY_EXPORT(AdditiveBackwardImpl);

namespace {

// Qp = q W_qᵀ per (b, h): [B, Hq, Nq, A]; Kpᵀ = W_k kᵀ per (b, g): [B, Hkv, A, Nkp], zero past Nk.
void project(const kernels::AttentionProblem& p, const AdditiveWeights& w, const float* q,
             const float* k, std::vector<float>& qp, std::vector<float>& kpt, int64_t nkp) {
  const int64_t A = w.A;
  qp.assign(static_cast<size_t>(p.B * p.Hq * p.Nq * A), 0.f);
  kpt.assign(static_cast<size_t>(p.B * p.Hkv * A * nkp), 0.f);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.Hq; ++h)
      sgemm(false, true, p.Nq, A, p.D, 1.f, q + b * p.q_stride[0] + h * p.q_stride[1], p.q_stride[2],
            w.wq, p.D, 0.f, qp.data() + (b * p.Hq + h) * p.Nq * A, A);
    for (int64_t g = 0; g < p.Hkv; ++g)
      sgemm(false, true, A, p.Nk, p.Dk, 1.f, w.wk, p.Dk, k + b * p.k_stride[0] + g * p.k_stride[1],
            p.k_stride[2], 0.f, kpt.data() + (b * p.Hkv + g) * A * nkp, nkp);
  }
}

int64_t padded_keys(int64_t Nk) { return (Nk + additive::kBc - 1) / additive::kBc * additive::kBc; }

}  // namespace

void additive_attention_forward(const kernels::AttentionProblem& p, const AdditiveWeights& w,
                                const float* q, const float* k, const float* v, float* out,
                                float* lse) {
  if (p.B * p.Hq * p.Nq == 0) return;
  const int64_t nkp = padded_keys(p.Nk);
  std::vector<float> qp, kpt;
  project(p, w, q, k, qp, kpt, nkp);
  additive::Job job{};
  job.p = &p;
  job.va = w.va;
  job.A = w.A;
  job.qp = qp.data();
  job.kpt = kpt.data();
  job.nkp = nkp;
  job.v = v;
  job.out = out;
  job.lse = lse;
  HWY_DYNAMIC_DISPATCH(AdditiveForwardImpl)(job);
}

void additive_attention_backward(const kernels::AttentionProblem& p, const AdditiveWeights& w,
                                 const float* q, const float* k, const float* v, const float* out,
                                 const float* lse, const float* dout, float* dq, float* dk,
                                 float* dv, float* dwq, float* dwk, float* dva, float* dbias) {
  const int64_t A = w.A, D = p.D, Dk = p.Dk, Dv = p.Dv;
  const int64_t rows = p.B * p.Hq * p.Nq;
  if (dbias) std::fill(dbias, dbias + rows * p.Nk, 0.f);
  std::fill(dq, dq + rows * D, 0.f);
  std::fill(dk, dk + p.B * p.Hkv * p.Nk * Dk, 0.f);
  std::fill(dv, dv + p.B * p.Hkv * p.Nk * Dv, 0.f);
  std::fill(dwq, dwq + A * D, 0.f);
  std::fill(dwk, dwk + A * Dk, 0.f);
  std::fill(dva, dva + A, 0.f);
  if (rows == 0 || p.Nk == 0 || A == 0) return;

  const int64_t nkp = padded_keys(p.Nk);
  std::vector<float> qp, kpt;
  project(p, w, q, k, qp, kpt, nkp);

  // D_i = rowsum(dO_i ∘ O_i), in double (dP − D_i cancels).
  std::vector<float> delta(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r % p.Nq, bh = r / p.Nq, h = bh % p.Hq, b = bh / p.Hq;
    const float* o = out + b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2];
    double acc = 0.0;
    for (int64_t c = 0; c < Dv; ++c) acc += static_cast<double>(o[c]) * dout[r * Dv + c];
    delta[r] = static_cast<float>(acc);
  }

  const int64_t n_units = p.B * p.Hkv * ((p.Nk + additive::kBc - 1) / additive::kBc);
  int n_parts = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(omp_get_max_threads()), n_units, 64}));
  if (omp_in_parallel() || n_parts < 1) n_parts = 1;
  std::vector<float> dqp(static_cast<size_t>(n_parts * rows * A), 0.f);
  std::vector<float> dva_parts(static_cast<size_t>(n_parts * A), 0.f);
  std::vector<float> dkp(static_cast<size_t>(p.B * p.Hkv * p.Nk * A), 0.f);

  // Rows too large for exp(s − lse) (kOwnStatsLse) and the query blocks holding them.
  std::vector<uint8_t> own_stats(static_cast<size_t>(rows), 0);
  std::vector<float> row_m, row_inv_l;
  std::vector<int64_t> stat_blocks;
  const int64_t n_qb = (p.Nq + additive::kBr - 1) / additive::kBr;
  for (int64_t r = 0; r < rows; ++r) {
    if (!(std::isfinite(lse[r]) && std::fabs(lse[r]) >= additive::kOwnStatsLse)) continue;
    own_stats[r] = 1;
    const int64_t blk = r / p.Nq * n_qb + r % p.Nq / additive::kBr;
    if (stat_blocks.empty() || stat_blocks.back() != blk) stat_blocks.push_back(blk);
  }
  if (!stat_blocks.empty()) {
    row_m.assign(static_cast<size_t>(rows), 0.f);
    row_inv_l.assign(static_cast<size_t>(rows), 1.f);
  }

  additive::Job job{};
  job.p = &p;
  job.va = w.va;
  job.A = A;
  job.qp = qp.data();
  job.kpt = kpt.data();
  job.nkp = nkp;
  job.v = v;
  job.lse_in = lse;
  job.own_stats = own_stats.data();
  job.row_m = row_m.data();
  job.row_inv_l = row_inv_l.data();
  job.stat_blocks = stat_blocks.data();
  job.n_stat_blocks = static_cast<int64_t>(stat_blocks.size());
  job.dout = dout;
  job.delta = delta.data();
  job.n_parts = n_parts;
  for (int t = 0; t < n_parts; ++t) {
    job.dqp_parts[t] = dqp.data() + t * rows * A;
    job.dva_parts[t] = dva_parts.data() + t * A;
  }
  job.dkp = dkp.data();
  job.dv = dv;
  job.dbias = dbias;
  HWY_DYNAMIC_DISPATCH(AdditiveBackwardImpl)(job);

  // Sum the per-thread parts in thread order.
  for (int t = 1; t < n_parts; ++t) {
    const float* src = job.dqp_parts[t];
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < rows * A; ++e) dqp[e] += src[e];
  }
  for (int t = 0; t < n_parts; ++t)
    for (int64_t a = 0; a < A; ++a) dva[a] += job.dva_parts[t][a];

  // Back through the projections: dq = dQp W_q, dW_q = Σ dQpᵀ q (and the same for k).
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.Hq; ++h) {
      const float* dqp_bh = dqp.data() + (b * p.Hq + h) * p.Nq * A;
      sgemm(false, false, p.Nq, D, A, 1.f, dqp_bh, A, w.wq, D, 0.f, dq + (b * p.Hq + h) * p.Nq * D, D);
      sgemm(true, false, A, D, p.Nq, 1.f, dqp_bh, A, q + b * p.q_stride[0] + h * p.q_stride[1],
            p.q_stride[2], 1.f, dwq, D);
    }
    for (int64_t g = 0; g < p.Hkv; ++g) {
      const float* dkp_bg = dkp.data() + (b * p.Hkv + g) * p.Nk * A;
      sgemm(false, false, p.Nk, Dk, A, 1.f, dkp_bg, A, w.wk, Dk, 0.f, dk + (b * p.Hkv + g) * p.Nk * Dk, Dk);
      sgemm(true, false, A, Dk, p.Nk, 1.f, dkp_bg, A, k + b * p.k_stride[0] + g * p.k_stride[1],
            p.k_stride[2], 1.f, dwk, Dk);
    }
  }
}

}  // namespace attn::cpu
#endif  // HWY_ONCE
