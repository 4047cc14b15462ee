// Shared helpers for the fused-kernel tests: random attention problems with every mask and
// layout, and the comparison against the double-precision reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "attn/core/rng.h"
#include "attn/kernels/attention_problem.h"

namespace attn::test {

// One random attention problem and its buffers. `strided` stores q, k, v, out as
// [B, N, H, D] (the layout of a fused projection) instead of [B, H, N, D].
struct Case {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dv = -1, Dk = -1;  // -1: = D
  bool causal = false;
  int64_t query_offset = 0;
  bool window = false;
  int64_t window_left = 0, window_right = 0;
  std::vector<int32_t> key_lengths;  // empty = none
  enum class Bias { none, full, broadcast_rows } bias = Bias::none;
  double dropout = 0.0;
  bool strided = false;
  double scale = -1.0;  // < 0: 1/sqrt(D)
  uint64_t seed = 1;

  std::string name() const {
    std::ostringstream s;  // (operator+ chains trip GCC 12's -Wrestrict false positive)
    s << "B" << B << " Hq" << Hq << " Hkv" << Hkv << " Nq" << Nq << " Nk" << Nk << " D" << D
      << " Dv" << (Dv < 0 ? D : Dv) << " Dk" << (Dk < 0 ? D : Dk);
    if (causal) s << " causal(off " << query_offset << ")";
    if (window) s << " window(" << window_left << "," << window_right << ")";
    if (!key_lengths.empty()) s << " key_lengths";
    if (bias != Bias::none) s << (bias == Bias::full ? " bias" : " bias[Nq,Nk]");
    if (dropout > 0) s << " dropout";
    if (strided) s << " strided";
    return s.str();
  }
};

// Buffers of a Case, filled with N(0, 1) values.
struct Problem {
  kernels::AttentionProblem p;
  std::vector<float> q, k, v, out, lse, dout, bias;
  std::vector<int32_t> key_lengths;

  explicit Problem(const Case& c) {
    const int64_t Dv = c.Dv < 0 ? c.D : c.Dv, Dk = c.Dk < 0 ? c.D : c.Dk;
    p.B = c.B, p.Hq = c.Hq, p.Hkv = c.Hkv, p.Nq = c.Nq, p.Nk = c.Nk, p.D = c.D, p.Dk = Dk, p.Dv = Dv;
    auto strides = [&](int64_t H, int64_t N, int64_t W, int64_t* s) {
      if (c.strided) {  // [B, N, H, W]
        s[0] = N * H * W, s[1] = W, s[2] = H * W;
      } else {
        s[0] = H * N * W, s[1] = N * W, s[2] = W;
      }
    };
    strides(c.Hq, c.Nq, c.D, p.q_stride);
    strides(c.Hkv, c.Nk, Dk, p.k_stride);
    strides(c.Hkv, c.Nk, Dv, p.v_stride);
    strides(c.Hq, c.Nq, Dv, p.o_stride);
    p.scale = c.scale < 0 ? 1.0 / std::sqrt(static_cast<double>(c.D)) : c.scale;
    p.causal = c.causal;
    p.query_offset = c.query_offset;
    p.has_window = c.window;
    p.window_left = c.window_left, p.window_right = c.window_right;
    key_lengths = c.key_lengths;
    if (!key_lengths.empty()) p.key_lengths = key_lengths.data();
    p.dropout = c.dropout;
    p.seed = c.seed + 100;

    Rng rng(c.seed);
    auto fill = [&](std::vector<float>& x, int64_t n) {
      x.resize(static_cast<size_t>(n));
      for (float& e : x) e = static_cast<float>(rng.normal());
    };
    fill(q, c.B * c.Hq * c.Nq * c.D);
    fill(k, c.B * c.Hkv * c.Nk * Dk);
    fill(v, c.B * c.Hkv * c.Nk * Dv);
    fill(dout, c.B * c.Hq * c.Nq * Dv);
    out.assign(static_cast<size_t>(c.B * c.Hq * c.Nq * Dv), 0.f);
    lse.assign(static_cast<size_t>(c.B * c.Hq * c.Nq), 0.f);
    if (c.bias != Case::Bias::none) {
      const bool full = c.bias == Case::Bias::full;
      fill(bias, (full ? c.B * c.Hq : 1) * c.Nq * c.Nk);
      // Hide some keys through the bias (-inf), including, for full bias, one whole row.
      for (size_t e = 0; e < bias.size(); e += 5) bias[e] = -std::numeric_limits<float>::infinity();
      if (full && c.Nq > 1)
        for (int64_t j = 0; j < c.Nk; ++j) bias[c.Nk + j] = -std::numeric_limits<float>::infinity();
      p.bias = bias.data();
      p.bias_stride[0] = full ? c.Hq * c.Nq * c.Nk : 0;
      p.bias_stride[1] = full ? c.Nq * c.Nk : 0;
      p.bias_stride[2] = c.Nk;
      p.bias_stride[3] = 1;
    }
  }
};

// Checks the size, then |got - want| <= tol * max|want| element-wise (max|want| taken as 1
// when want is all zeros); prints the first mismatches. Gradients are compared relative to
// the largest magnitude of their tensor: elements near zero come from cancelling sums
// (dS = P (dP - D_i)), whose relative error is unbounded in any finite precision.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what << ": size";
  double scale = 0.0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  if (scale == 0.0) scale = 1.0;
  int shown = 0;
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]) / scale;
    if (!(e <= tol)) {  // also catches NaN
      worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(worst, e);
      if (shown++ < 3)
        ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " want " << want[i]
                      << " (max |want| " << scale << ")";
    }
  }
  EXPECT_EQ(shown, 0) << what << ": " << shown << " elements off, worst relative error " << worst;
}

}  // namespace attn::test
