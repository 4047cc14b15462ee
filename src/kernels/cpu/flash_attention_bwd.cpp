// Fused attention backward (FlashAttention-2, Dao 2023, Algorithm 2) on the CPU: per key
// block, recompute the scores from q, k and the forward's lse, and accumulate dK, dV in the
// tile while dQ goes to a per-thread buffer. Highway dynamic dispatch: this file is compiled
// once per SIMD target through foreach_target.h.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/flash_attention_bwd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/aligned_allocator.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "kernels/cpu/attention_tiles_bwd-inl.h"
#include "kernels/cpu/key_block_rows.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/core/rng.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention_backward.h"

#ifndef ATTN_FLASH_BWD_SHARED_
#define ATTN_FLASH_BWD_SHARED_
namespace attn::cpu::flash_bwd {

// Everything the per-target code needs, prepared once (target independent).
struct Job {
  const kernels::AttentionProblem* p;
  const float *q, *k, *v, *out, *lse, *dout;
  float* delta;                 // [B, Hq, Nq]: D_i = rowsum(dO_i ∘ O_i), filled first
  int64_t delta_rows;           // B·Hq·Nq
  // Rows whose |lse| is too large to rebuild P from (kOwnStatsLse): own_stats[r] = 1, and the
  // backward's own row max m and 1/l (a pre-pass over the keys) in row_m, row_inv_l.
  const uint8_t* own_stats;     // [B, Hq, Nq]
  float *row_m, *row_inv_l;     // [B, Hq, Nq]
  const int64_t* stat_blocks;   // (b·Hq + h)·n_qb + query block, for blocks holding such rows
  int64_t n_stat_blocks;
  float* dq_parts[64];          // per thread: [B, Hq, Nq, D] (part 0 is dq itself)
  int n_parts;
  // Every key block in one unit (Nk ≤ group_blocks·kBc): each dq row has one writer, which
  // stores it (zero when no key is visible); dq is neither pre-zeroed nor split per thread.
  bool dq_direct;
  int threads;
  float *dk, *dv;
  float* dbias;                 // [B, Hq, Nq, Nk] or null
  int64_t group_blocks;         // key blocks per work unit, 1 .. kMaxGroup
};

// Tile sizes (rows of Q per tile, keys per block): 64 × 64 keeps K, Kᵀ, V, Vᵀ and the dK/dV
// accumulators of a key block (160 KiB at D = 128), the S/dP tiles and the B operand of every
// tile product within L1/L2. A work unit holds up to kMaxGroup key blocks, as many as fit in
// kGroupBytes (4 at D = 128, 2 at D = 256) of the 2 MiB L2.
constexpr int64_t kBr = 64;
constexpr int64_t kBc = 64;
constexpr int64_t kMaxGroup = 4;
constexpr int64_t kGroupBytes = 768 * 1024;

// P = exp(s − lse) from the forward's f32 lse is off by up to |lse|·2^-24 in the exponent
// (2^-17 relative at |lse| = 128, no more than the f32 scores' own rounding there); beyond it,
// log l soon vanishes in lse's rounding (at 1e10 two tied keys would get P = 1 each) and the
// forward's and backward's f32 scores, rounded differently, stop agreeing to O(1). Such rows
// get their max m and sum l from the backward's own scores (bit-identical to those it then
// uses), and P = exp(s − m) / l.
constexpr float kOwnStatsLse = 128.f;

}  // namespace attn::cpu::flash_bwd
#endif

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace flash_bwd_impl {

using flash_bwd::kBc;
using flash_bwd::kBr;
using tiles_bwd::pad_width;
using tiles_bwd::tile_gemm;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Per thread: the K/V packs and dK/dV accumulators of up to kMaxGroup key blocks, and the
// query-tile buffers they share.
struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> buf;
  float *kt[flash_bwd::kMaxGroup], *vt[flash_bwd::kMaxGroup], *kp[flash_bwd::kMaxGroup];
  float *dk_acc[flash_bwd::kMaxGroup], *dv_acc[flash_bwd::kMaxGroup];
  float *qp, *dop, *pt, *pd, *dst, *dqt;
  // G: key blocks per unit (Job::group_blocks), so that short keys allocate one block.
  Scratch(int64_t D, int64_t Dv, int64_t G) {
    const int64_t Dp = pad_width(D), Dvp = pad_width(Dv);
    const int64_t block_sizes[] = {D * kBc, Dv * kBc, kBc * Dp, kBc * Dp, kBc * Dvp};
    const int64_t tile_sizes[] = {kBr * Dp, kBr * Dvp, kBr * kBc, kBr * kBc, kBr * kBc, kBr * Dp};
    int64_t total = 0;
    for (int64_t s : block_sizes) total += G * pad_width(s);
    for (int64_t s : tile_sizes) total += pad_width(s);
    buf = hwy::AllocateAligned<float>(static_cast<size_t>(total));
    float* at = buf.get();
    // Zeroed once: pads that no unit writes (K, V columns past a block's keys are zeroed per
    // block; Q, dO, K columns past D only feed pad columns of results) stay finite.
    std::memset(buf.get(), 0, sizeof(float) * static_cast<size_t>(total));
    float** block_ptrs[] = {kt, vt, kp, dk_acc, dv_acc};
    for (int i = 0; i < 5; ++i)
      for (int64_t t = 0; t < G; ++t) {
        block_ptrs[i][t] = at;
        at += pad_width(block_sizes[i]);
      }
    float** tile_ptrs[] = {&qp, &dop, &pt, &pd, &dst, &dqt};
    for (int i = 0; i < 6; ++i) {
      *tile_ptrs[i] = at;
      at += pad_width(tile_sizes[i]);
    }
  }
};

// Row i (global gi) of the tile: pr[j] = fma(S_ij, scale, bias_ij), −inf where hidden or
// j >= kn. Not inlined, with an explicit fma: the row-stats pre-pass and the main pass must
// round these scores identically.
HWY_NOINLINE void score_row(const kernels::AttentionProblem& p, int64_t b, int64_t h, int64_t gi,
                            int64_t j0, int64_t kn, float scale, float* pr) {
  const float* brow =
      p.bias ? p.bias + b * p.bias_stride[0] + h * p.bias_stride[1] + gi * p.bias_stride[2] : nullptr;
  for (int64_t j = 0; j < kBc; ++j) {
    const int64_t gj = j0 + j;
    if (j >= kn || !p.visible(b, gi, gj))
      pr[j] = kNegInf;
    else
      pr[j] = std::fma(pr[j], scale, brow ? brow[gj * p.bias_stride[3]] : 0.f);
  }
}

// Packs key block j0 (kn keys) of (b, g): Kᵀ [D, kBc] zero past kn, as backward_unit does.
void pack_kt(const flash_bwd::Job& job, int64_t b, int64_t g, int64_t j0, int64_t kn, float* kt) {
  const kernels::AttentionProblem& p = *job.p;
  const float* kbase = job.k + b * p.k_stride[0] + g * p.k_stride[1] + j0 * p.k_stride[2];
  std::memset(kt, 0, sizeof(float) * p.D * kBc);
  for (int64_t j = 0; j < kn; ++j)
    for (int64_t c = 0; c < p.D; ++c) kt[c * kBc + j] = kbase[j * p.k_stride[2] + c];
}

// The row-stats pre-pass for one query block (i0 = qb·kBr) of (b, h): for its own_stats rows,
// m = max_j s_ij and 1/l, l = Σ_j exp(s_ij − m) (in double), from the same packed tiles,
// tile_gemm and score_row as backward_unit, so that its s_ij are the very same floats.
void row_stats_block(const flash_bwd::Job& job, int64_t bh, int64_t qb, Scratch& s) {
  const kernels::AttentionProblem& p = *job.p;
  const int64_t b = bh / p.Hq, h = bh % p.Hq, g = p.kv_head(h);
  const int64_t D = p.D, Dp = pad_width(D), Nq = p.Nq, i0 = qb * kBr;
  const int64_t qn = std::min(kBr, Nq - i0);
  const float scale = static_cast<float>(p.scale);
  std::memset(s.qp, 0, sizeof(float) * kBr * Dp);
  const float* qbase = job.q + b * p.q_stride[0] + h * p.q_stride[1] + i0 * p.q_stride[2];
  for (int64_t i = 0; i < qn; ++i) std::memcpy(s.qp + i * Dp, qbase + i * p.q_stride[2], sizeof(float) * D);
  double m[kBr], l[kBr];
  for (int64_t i = 0; i < qn; ++i) m[i] = -std::numeric_limits<double>::infinity(), l[i] = 0;
  for (int64_t j0 = 0; j0 < p.Nk; j0 += kBc) {
    const int64_t kn = std::min(kBc, p.Nk - j0);
    const RowRange rows = rows_seeing_key_block(p, b, j0, kn);
    if (rows.empty() || rows.hi < i0 || rows.lo >= i0 + qn) continue;
    pack_kt(job, b, g, j0, kn, s.kt[0]);
    tile_gemm(qn, kBc, D, s.qp, Dp, 1, s.kt[0], kBc, s.pt, kBc, false);
    for (int64_t i = 0; i < qn; ++i) {
      if (!job.own_stats[bh * Nq + i0 + i]) continue;
      float* pr = s.pt + i * kBc;
      score_row(p, b, h, i0 + i, j0, kn, scale, pr);
      double mx = m[i];
      for (int64_t j = 0; j < kn; ++j) mx = std::max(mx, double(pr[j]));
      if (mx == -std::numeric_limits<double>::infinity()) continue;
      double sum = m[i] == -std::numeric_limits<double>::infinity() ? 0.0 : l[i] * std::exp(m[i] - mx);
      for (int64_t j = 0; j < kn; ++j) sum += std::exp(double(pr[j]) - mx);
      m[i] = mx, l[i] = sum;
    }
  }
  for (int64_t i = 0; i < qn; ++i) {
    const int64_t r = bh * Nq + i0 + i;
    if (!job.own_stats[r]) continue;
    const bool seen = m[i] > -std::numeric_limits<double>::infinity();  // else P = 0
    job.row_m[r] = seen ? static_cast<float>(m[i]) : 0.f;  // m is one of the f32 scores: exact
    job.row_inv_l[r] = seen ? static_cast<float>(1.0 / l[i]) : 0.f;
  }
}

// Visible keys [lo, hi) of query row gi among the ke keys from j0 (structural masks; key
// lengths are already folded into ke). Empty: lo == hi.
HWY_INLINE void visible_cols(const kernels::AttentionProblem& p, int64_t gi, int64_t j0, int64_t ke,
                             int64_t* lo, int64_t* hi) {
  const int64_t pos = gi + p.query_offset;
  int64_t a = 0, e = ke;
  if (p.causal) e = std::min(e, pos + 1 - j0);
  if (p.has_window) {
    a = std::max(a, pos - p.window_left - j0);
    e = std::min(e, pos + p.window_right + 1 - j0);
  }
  a = std::clamp<int64_t>(a, 0, ke);
  *lo = a;
  *hi = std::clamp<int64_t>(e, a, ke);
}

// One work unit: key blocks kb0 .. kb0 + n_blocks − 1 of kv head g in batch b, all query
// heads of g's group. Each query tile is loaded once for all the unit's key blocks (its Q, dO
// and dQ rows come from memory when a head's exceed L2), and its dQ summed over them in the
// tile before one update of dq_part (or, with job.dq_direct, one store into dq).
//
// Short keys: a block's keys past the batch's key length are never packed or computed (their
// dK, dV rows are zero), and the score / dP tiles span the block's keys rounded up to 16,
// not kBc, so a block of 12 keys costs 16 columns, not 64.
void backward_unit(const flash_bwd::Job& job, int64_t b, int64_t g, int64_t kb0, int64_t n_blocks,
                   float* dq_part, Scratch& s) {
  const kernels::AttentionProblem& p = *job.p;
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t D = p.D, Dv = p.Dv, Nq = p.Nq, Nk = p.Nk;
  const int64_t Dp = pad_width(D), Dvp = pad_width(Dv);
  const float scale = static_cast<float>(p.scale);
  const int64_t klen = p.key_lengths ? std::clamp<int64_t>(p.key_lengths[b], 0, Nk) : Nk;
  const int64_t G = p.group();

  // Per key block t: keys [j0[t], j0[t] + kn[t]), of which the first ke[t] lie within the key
  // length (kw[t]: ke rounded up to whole 16-float vectors), the rows that see any of them, and
  // Kᵀ [D, kBc], Vᵀ [Dv, kBc] (B operands of S and dP, zero in columns [ke, kw)), K padded
  // [kBc, Dp] (B operand of dQ).
  int64_t j0[flash_bwd::kMaxGroup], kn[flash_bwd::kMaxGroup], ke[flash_bwd::kMaxGroup],
      kw[flash_bwd::kMaxGroup];
  RowRange rows[flash_bwd::kMaxGroup];
  RowRange all{};
  // Rows whose width needs no padding (D, Dv multiples of 16) are read in place — Q, dO and K
  // as tile operands — instead of copied into the padded tiles: at short sequences these row
  // copies cost as much as a tile product.
  const bool q_in_place = D == Dp, do_in_place = Dv == Dvp;
  const float* kdq[flash_bwd::kMaxGroup];  // B operand of dQ: K rows
  const int64_t ld_kdq = q_in_place ? p.k_stride[2] : Dp;
  for (int64_t t = 0; t < n_blocks; ++t) {
    j0[t] = (kb0 + t) * kBc;
    kn[t] = std::min(kBc, Nk - j0[t]);
    ke[t] = std::clamp<int64_t>(klen - j0[t], 0, kn[t]);
    kw[t] = pad_width(ke[t]);
    rows[t] = rows_seeing_key_block(p, b, j0[t], kn[t]);
    float* dk_out = job.dk + ((b * p.Hkv + g) * Nk + j0[t]) * D;
    float* dv_out = job.dv + ((b * p.Hkv + g) * Nk + j0[t]) * Dv;
    if (rows[t].empty()) ke[t] = 0;
    // Keys no row sees get zero gradients.
    std::memset(dk_out + ke[t] * D, 0, sizeof(float) * (kn[t] - ke[t]) * D);
    std::memset(dv_out + ke[t] * Dv, 0, sizeof(float) * (kn[t] - ke[t]) * Dv);
    if (rows[t].empty()) continue;
    all = all.empty() ? rows[t] : RowRange{std::min(all.lo, rows[t].lo), std::max(all.hi, rows[t].hi)};
    const float* kbase = job.k + b * p.k_stride[0] + g * p.k_stride[1] + j0[t] * p.k_stride[2];
    const float* vbase = job.v + b * p.v_stride[0] + g * p.v_stride[1] + j0[t] * p.v_stride[2];
    kdq[t] = q_in_place ? kbase : s.kp[t];
    if (!q_in_place)
      for (int64_t j = 0; j < ke[t]; ++j) std::memcpy(s.kp[t] + j * Dp, kbase + j * p.k_stride[2], sizeof(float) * D);
    tiles_bwd::transpose_rows(kbase, p.k_stride[2], ke[t], D, s.kt[t], kBc, kw[t]);
    tiles_bwd::transpose_rows(vbase, p.v_stride[2], ke[t], Dv, s.vt[t], kBc, kw[t]);
  }
  // Whether dk_acc[t], dv_acc[t] hold a first product yet (stored, not added: no zeroing).
  bool have_dkv[flash_bwd::kMaxGroup] = {false, false, false, false};

  // dq rows of this unit's heads outside the query tiles below see no key: zero (direct mode).
  const int64_t tiles_lo = all.empty() ? Nq : all.lo / kBr * kBr;
  const int64_t tiles_hi = all.empty() ? Nq : std::min(Nq, (all.hi / kBr + 1) * kBr);
  if (job.dq_direct)
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      float* dq_h = dq_part + (b * p.Hq + h) * Nq * D;
      std::memset(dq_h, 0, sizeof(float) * tiles_lo * D);
      std::memset(dq_h + tiles_hi * D, 0, sizeof(float) * (Nq - tiles_hi) * D);
    }
  if (all.empty()) return;

  const bool dropout = p.dropout > 0.0;
  const float keep_scale = dropout ? static_cast<float>(1.0 / (1.0 - p.dropout)) : 1.f;

  for (int64_t h = g * G; h < (g + 1) * G; ++h) {
    const int64_t bh = b * p.Hq + h;
    for (int64_t i0 = tiles_lo; i0 < tiles_hi; i0 += kBr) {
      const int64_t qn = std::min(kBr, Nq - i0);

      // Q and dO rows, padded (A operands of S and dP; B operands of dK and dV).
      const float* qbase = job.q + b * p.q_stride[0] + h * p.q_stride[1] + i0 * p.q_stride[2];
      const float* dobase = job.dout + (bh * Nq + i0) * Dv;
      const float* qa = q_in_place ? qbase : s.qp;
      const int64_t ldq = q_in_place ? p.q_stride[2] : Dp;
      const float* doa = do_in_place ? dobase : s.dop;
      const int64_t lddo = do_in_place ? Dv : Dvp;
      for (int64_t i = 0; i < qn; ++i) {
        if (!q_in_place) std::memcpy(s.qp + i * Dp, qbase + i * p.q_stride[2], sizeof(float) * D);
        if (!do_in_place) std::memcpy(s.dop + i * Dvp, dobase + i * Dv, sizeof(float) * Dv);
      }

      bool have_dq = false;  // whether s.dqt holds this tile's dS K yet
      for (int64_t t = 0; t < n_blocks; ++t) {
        if (rows[t].empty() || rows[t].hi < i0 || rows[t].lo >= i0 + qn) continue;
        const int64_t jb = j0[t], kb_n = ke[t], kb_w = kw[t];

        // S = Q Kᵀ (raw), kb_w columns.
        tile_gemm(qn, kb_w, D, qa, ldq, 1, s.kt[t], kBc, s.pt, kBc, false);

        // P = exp(S·scale + bias − lse), 0 where hidden or the row has no visible key; rows
        // with their own stats: P = exp(S·scale + bias − m) / l.
        const float* lse_row = job.lse + bh * Nq + i0;
        for (int64_t i = 0; i < qn; ++i) {
          float* pr = s.pt + i * kBc;
          const float lse_i = lse_row[i];
          const int64_t gi = i0 + i;
          int64_t lo, hi;
          visible_cols(p, gi, jb, kb_n, &lo, &hi);
          if (lse_i == kNegInf || std::isnan(lse_i) || lo >= hi) {
            std::memset(pr, 0, sizeof(float) * kb_w);
            continue;
          }
          if (job.own_stats[bh * Nq + gi]) {
            score_row(p, b, h, gi, jb, kb_n, scale, pr);
            const auto vm = hn::Set(d, job.row_m[bh * Nq + gi]);
            const auto vinv = hn::Set(d, job.row_inv_l[bh * Nq + gi]);
            for (int64_t j = 0; j < kb_w; j += L)
              hn::StoreU(hn::Mul(hn::Exp(d, hn::Sub(hn::LoadU(d, pr + j), vm)), vinv), d, pr + j);
            continue;
          }
          float row_scale = scale;
          if (p.bias) {
            const float* brow = p.bias + b * p.bias_stride[0] + h * p.bias_stride[1] + gi * p.bias_stride[2];
            for (int64_t j = lo; j < hi; ++j) pr[j] = pr[j] * scale + brow[(jb + j) * p.bias_stride[3]];
            row_scale = 1.f;
          }
          const auto vs = hn::Set(d, row_scale);
          const auto vl = hn::Set(d, lse_i);
          if (lo == 0 && hi == kb_w) {
            for (int64_t j = 0; j < kb_w; j += L)
              // Exp gives 0 below −104 and for −inf.
              hn::StoreU(hn::Exp(d, hn::MulSub(hn::LoadU(d, pr + j), vs, vl)), d, pr + j);
          } else {
            // Hidden columns (outside [lo, hi), and pad columns past the keys) get P = 0.
            const auto vlo = hn::Set(d, static_cast<float>(lo));
            const auto vhi = hn::Set(d, static_cast<float>(hi));
            for (int64_t j = 0; j < kb_w; j += L) {
              const auto jf = hn::Iota(d, static_cast<float>(j));
              const auto hidden = hn::Or(hn::Lt(jf, vlo), hn::Ge(jf, vhi));
              const auto e = hn::Exp(d, hn::MulSub(hn::LoadU(d, pr + j), vs, vl));
              hn::StoreU(hn::IfThenZeroElse(hidden, e), d, pr + j);
            }
          }
        }

        // dP = dO Vᵀ.
        tile_gemm(qn, kb_w, Dv, doa, lddo, 1, s.vt[t], kBc, s.dst, kBc, false);

        // dS = P ∘ (dP − D_i); with dropout dP is that of the undropped weights:
        // dP_ij = keep_ij/(1−rate) · dO_i·v_j, and dV uses the dropped weights.
        const float* delta_row = job.delta + bh * Nq + i0;
        const float* pv = s.pt;  // weights multiplying V
        if (!dropout) {
          for (int64_t i = 0; i < qn; ++i) {
            const auto vdelta = hn::Set(d, delta_row[i]);
            float* dsr = s.dst + i * kBc;
            const float* pr = s.pt + i * kBc;
            for (int64_t j = 0; j < kb_w; j += L)
              hn::StoreU(hn::Mul(hn::LoadU(d, pr + j), hn::Sub(hn::LoadU(d, dsr + j), vdelta)), d, dsr + j);
          }
        } else {
          for (int64_t i = 0; i < qn; ++i) {
            float* dsr = s.dst + i * kBc;
            const float* pr = s.pt + i * kBc;
            float* pdr = s.pd + i * kBc;
            for (int64_t j = 0; j < kb_w; ++j) {
              const bool keep = j < kb_n && pr[j] != 0.f &&
                                dropout_keep(p.seed, p.dropout, b, h, i0 + i, jb + j, p.Hq, Nq, Nk);
              const float f = keep ? keep_scale : 0.f;
              pdr[j] = pr[j] * f;
              dsr[j] = pr[j] * (dsr[j] * f - delta_row[i]);
            }
          }
          pv = s.pd;
        }

        if (job.dbias)  // d(loss)/d(score after bias) is dS itself (zero past kb_n: pre-filled)
          for (int64_t i = 0; i < qn; ++i)
            std::memcpy(job.dbias + ((bh * Nq) + i0 + i) * Nk + jb, s.dst + i * kBc, sizeof(float) * kb_n);

        // dV += Pᵀ dO;  dK += dSᵀ Q (scaled at the end);  dQ_tile (+)= dS K.
        tile_gemm(kb_n, Dvp, qn, pv, 1, kBc, doa, lddo, s.dv_acc[t], Dvp, have_dkv[t]);
        tile_gemm(kb_n, Dp, qn, s.dst, 1, kBc, qa, ldq, s.dk_acc[t], Dp, have_dkv[t]);
        have_dkv[t] = true;
        tile_gemm(qn, Dp, kb_n, s.dst, kBc, 1, kdq[t], ld_kdq, s.dqt, Dp, have_dq);
        have_dq = true;
      }
      float* dq_rows = dq_part + (bh * Nq + i0) * D;
      if (job.dq_direct) {
        // dQ = dQ_tile · scale (the only writer of these rows).
        const auto vsc = hn::Set(d, scale);
        for (int64_t i = 0; i < qn; ++i) {
          float* dst = dq_rows + i * D;
          if (!have_dq) {
            std::memset(dst, 0, sizeof(float) * D);
            continue;
          }
          const float* src = s.dqt + i * Dp;
          int64_t c = 0;
          for (; c + L <= D; c += L) hn::StoreU(hn::Mul(hn::LoadU(d, src + c), vsc), d, dst + c);
          for (; c < D; ++c) dst[c] = src[c] * scale;
        }
        continue;
      }
      if (!have_dq) continue;
      // dQ += dQ_tile · scale.
      for (int64_t i = 0; i < qn; ++i) tiles_bwd::axpy(D, scale, s.dqt + i * Dp, dq_rows + i * D);
    }
  }

  for (int64_t t = 0; t < n_blocks; ++t) {
    if (rows[t].empty()) continue;
    float* dk_out = job.dk + ((b * p.Hkv + g) * Nk + j0[t]) * D;
    float* dv_out = job.dv + ((b * p.Hkv + g) * Nk + j0[t]) * Dv;
    if (!have_dkv[t]) {  // not reached: some tile of rows[t] ran (kept for safety)
      std::memset(dk_out, 0, sizeof(float) * ke[t] * D);
      std::memset(dv_out, 0, sizeof(float) * ke[t] * Dv);
      continue;
    }
    for (int64_t j = 0; j < ke[t]; ++j) {
      for (int64_t c = 0; c < D; ++c) dk_out[j * D + c] = s.dk_acc[t][j * Dp + c] * scale;
      std::memcpy(dv_out + j * Dv, s.dv_acc[t] + j * Dvp, sizeof(float) * Dv);
    }
  }
}

// Σ_c x[c]·y[c] in double (f32 inputs widened lane by lane), rounded to f32.
float dot_f64(const float* x, const float* y, int64_t n) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(dd));
  auto acc = hn::Zero(dd);
  int64_t c = 0;
  for (; c + L <= n; c += L)
    acc = hn::MulAdd(hn::PromoteTo(dd, hn::LoadU(df, x + c)), hn::PromoteTo(dd, hn::LoadU(df, y + c)), acc);
  double sum = hn::GetLane(hn::SumOfLanes(dd, acc));
  for (; c < n; ++c) sum += static_cast<double>(x[c]) * y[c];
  return static_cast<float>(sum);
}

}  // namespace flash_bwd_impl

void FlashBackwardImpl(const flash_bwd::Job& job) {
  const kernels::AttentionProblem& p = *job.p;
  const int64_t n_kb = (p.Nk + flash_bwd::kBc - 1) / flash_bwd::kBc;
  const int64_t n_groups = (n_kb + job.group_blocks - 1) / job.group_blocks;
  const int64_t n_units = p.B * p.Hkv * n_groups;
#pragma omp parallel num_threads(job.threads)
  {
    const int tid = omp_get_thread_num();
    flash_bwd_impl::Scratch scratch(p.D, p.Dv, job.group_blocks);
    float* dq_part = job.dq_parts[tid < job.n_parts ? tid : 0];
    const int64_t n_qb = (p.Nq + flash_bwd::kBr - 1) / flash_bwd::kBr;
    // D_i = rowsum(dO_i ∘ O_i) in double: dP − D_i cancels, so D_i should not add error.
#pragma omp for schedule(static)
    for (int64_t r = 0; r < job.delta_rows; ++r) {
      const int64_t i = r % p.Nq, bh = r / p.Nq, h = bh % p.Hq, b = bh / p.Hq;
      const float* o = job.out + b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2];
      job.delta[r] = flash_bwd_impl::dot_f64(o, job.dout + r * p.Dv, p.Dv);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < job.n_stat_blocks; ++u)
      flash_bwd_impl::row_stats_block(job, job.stat_blocks[u] / n_qb, job.stat_blocks[u] % n_qb, scratch);
    // Static round-robin: the same units go to the same thread in the same order on every run.
    const int64_t T = job.threads;
#pragma omp for schedule(static, 1)
    for (int64_t u = 0; u < n_units; ++u) {
      // Consecutive units are neighbouring key groups, whose cost falls steadily under a causal
      // mask. Dealing them out in a snake (thread order reversed every other round of T) pairs
      // expensive with cheap groups: with 2 threads and 4 groups a head, plain round-robin gives
      // one thread groups 0 and 2 (84 of 136 tile products at N = 1024) and the snake 0 and 3 (68).
      const int64_t round = u / T, lane = u % T;
      const int64_t v = (round % 2 == 1 && (round + 1) * T <= n_units) ? round * T + (T - 1 - lane) : u;
      const int64_t kb0 = v % n_groups * job.group_blocks, bg = v / n_groups;
      flash_bwd_impl::backward_unit(job, bg / p.Hkv, bg % p.Hkv, kb0,
                                    std::min(job.group_blocks, n_kb - kb0), dq_part, scratch);
    }
  }
}

}  // namespace attn::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::cpu {

HWY_EXPORT(FlashBackwardImpl);

bool flash_attention_backward_supports(const kernels::AttentionProblem& p) {
  return p.Dk == p.D && p.Hkv > 0 && p.Hq % p.Hkv == 0;
}

void flash_attention_backward(const kernels::AttentionProblem& p, const float* q, const float* k,
                              const float* v, const float* out, const float* lse, const float* dout,
                              float* dq, float* dk, float* dv, float* dbias) {
  const int64_t D = p.D, Dv = p.Dv;
  const int64_t rows = p.B * p.Hq * p.Nq;
  if (dbias) std::fill(dbias, dbias + rows * p.Nk, 0.f);
  if (p.Nk == 0 || rows == 0) {
    std::fill(dq, dq + rows * D, 0.f);
    std::fill(dk, dk + p.B * p.Hkv * p.Nk * D, 0.f);
    std::fill(dv, dv + p.B * p.Hkv * p.Nk * Dv, 0.f);
    return;
  }
  std::vector<float> delta(static_cast<size_t>(rows));  // filled by FlashBackwardImpl

  // Rows too large for exp(s − lse) (kOwnStatsLse) and the query blocks holding them.
  std::vector<uint8_t> own_stats(static_cast<size_t>(rows), 0);
  std::vector<float> row_m, row_inv_l;
  std::vector<int64_t> stat_blocks;
  const int64_t n_qb = (p.Nq + flash_bwd::kBr - 1) / flash_bwd::kBr;
  for (int64_t r = 0; r < rows; ++r) {
    if (!(std::isfinite(lse[r]) && std::fabs(lse[r]) >= flash_bwd::kOwnStatsLse)) continue;
    own_stats[r] = 1;
    const int64_t blk = r / p.Nq * n_qb + r % p.Nq / flash_bwd::kBr;
    if (stat_blocks.empty() || stat_blocks.back() != blk) stat_blocks.push_back(blk);
  }
  if (!stat_blocks.empty()) {
    row_m.assign(static_cast<size_t>(rows), 0.f);
    row_inv_l.assign(static_cast<size_t>(rows), 1.f);
  }

  flash_bwd::Job job{};
  job.p = &p;
  job.own_stats = own_stats.data();
  job.row_m = row_m.data();
  job.row_inv_l = row_inv_l.data();
  job.stat_blocks = stat_blocks.data();
  job.n_stat_blocks = static_cast<int64_t>(stat_blocks.size());
  job.q = q;
  job.k = k;
  job.v = v;
  job.out = out;
  job.lse = lse;
  job.dout = dout;
  job.delta = delta.data();
  job.delta_rows = rows;
  job.dk = dk;
  job.dv = dv;
  job.dbias = dbias;
  const int64_t n_kb = (p.Nk + flash_bwd::kBc - 1) / flash_bwd::kBc;
  const int64_t threads = omp_in_parallel() ? 1 : std::min(omp_get_max_threads(), 64);
  // Key blocks per unit: as many as leave ≥ 8 units per thread (for balance under causal and
  // window masks) and fit their packs in kGroupBytes, up to kMaxGroup; each query tile is then
  // read once per group instead of once per block (−7 to −11 % time at N = 2048, D = 64 and
  // 128; docs/PERFORMANCE.md).
  auto pad16 = [](int64_t n) { return (n + 15) / 16 * 16; };  // tiles_bwd::pad_width
  // Kᵀ, Vᵀ, K padded, dK and dV accumulators (Scratch).
  const int64_t block_bytes = int64_t{4} * flash_bwd::kBc * (D + Dv + 2 * pad16(D) + pad16(Dv));
  job.group_blocks = 1;
  for (int64_t gb = flash_bwd::kMaxGroup; gb > 1; gb /= 2)
    if (gb * block_bytes <= flash_bwd::kGroupBytes && p.B * p.Hkv * ((n_kb + gb - 1) / gb) >= 8 * threads) {
      job.group_blocks = gb;
      break;
    }
  const int64_t n_groups = (n_kb + job.group_blocks - 1) / job.group_blocks;
  const int64_t n_units = p.B * p.Hkv * n_groups;
  job.threads = std::max(static_cast<int>(std::min(threads, n_units)), 1);
  // One key group: each dq row is stored by its one unit. Else per-thread dq buffers, summed.
  job.dq_direct = n_groups == 1;
  job.n_parts = job.dq_direct ? 1 : job.threads;
  if (!job.dq_direct) std::fill(dq, dq + rows * D, 0.f);
  std::vector<float> parts(static_cast<size_t>((job.n_parts - 1) * rows * D), 0.f);
  job.dq_parts[0] = dq;
  for (int t = 1; t < job.n_parts; ++t) job.dq_parts[t] = parts.data() + (t - 1) * rows * D;

  HWY_DYNAMIC_DISPATCH(FlashBackwardImpl)(job);

  // dq = part 0 + part 1 + ... in thread order (deterministic).
  if (job.n_parts > 1) {
    const int64_t n = rows * D;
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < n; ++e) {
      float acc = dq[e];
      for (int t = 1; t < job.n_parts; ++t) acc += job.dq_parts[t][e];
      dq[e] = acc;
    }
  }
}

}  // namespace attn::cpu
#endif  // HWY_ONCE
