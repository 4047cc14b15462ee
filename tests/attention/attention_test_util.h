// Test helpers for the attention layer: random tensors, an independent direct formula for
// attention in double (written from the definitions, sharing no code with the library), and
// comparisons that check shapes first and print the first mismatches.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "attn/attention/attention.h"
#include "attn/core/rng.h"
#include "attn/core/tensor.h"

namespace attn::test {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// Uniform values in [lo, hi) from a seeded generator.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& x : v) x = static_cast<float>(lo + (hi - lo) * rng.uniform());
  return Tensor::from_vector(v, shape);
}

inline std::vector<double> to_double(const Tensor& t) {
  std::vector<float> f = t.to_vector();
  return std::vector<double>(f.begin(), f.end());
}

// Everything the direct formula needs, in logical row-major order.
struct DirectInputs {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dk = 1, Dv = 1, A = 0;
  std::vector<double> q, k, v;     // [B, Hq, Nq, D], [B, Hkv, Nk, Dk], [B, Hkv, Nk, Dv]
  std::vector<double> w, wq, wk, va;
  std::vector<int> key_lengths;    // empty = none
  std::vector<double> bias;        // full [B, Hq, Nq, Nk] or empty
  ScoreFn fn = ScoreFn::scaled_dot;
  double scale = 0;                // used by scaled_dot
  double temperature = 1;
  bool causal = false;
  int64_t offset = 0;
  bool window = false;
  int64_t left = 0, right = 0;
  double dropout = 0;
  uint64_t seed = 0;
};

struct DirectResult {
  std::vector<double> out, lse, weights;  // [B, Hq, Nq, Dv], [B, Hq, Nq], [B, Hq, Nq, Nk]
};

// Attention straight from the definitions, one query row at a time: scores, mask,
// max-subtracted softmax, dropout, weighted sum.
inline DirectResult direct_attention(const DirectInputs& in) {
  DirectResult r;
  r.out.assign(in.B * in.Hq * in.Nq * in.Dv, 0.0);
  r.lse.assign(in.B * in.Hq * in.Nq, -kInf);
  r.weights.assign(in.B * in.Hq * in.Nq * in.Nk, 0.0);
  const int64_t group = in.Hq / in.Hkv;
  for (int64_t b = 0; b < in.B; ++b)
    for (int64_t h = 0; h < in.Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < in.Nq; ++i) {
        auto Q = [&](int64_t d) { return in.q[((b * in.Hq + h) * in.Nq + i) * in.D + d]; };
        std::vector<double> s(in.Nk, -kInf);
        std::vector<double> qw(in.fn == ScoreFn::general ? in.Dk : 0, 0.0);  // qᵀ W
        for (int64_t c = 0; c < static_cast<int64_t>(qw.size()); ++c)
          for (int64_t a = 0; a < in.D; ++a) qw[c] += Q(a) * in.w[a * in.Dk + c];
        for (int64_t j = 0; j < in.Nk; ++j) {
          auto K = [&](int64_t d) { return in.k[((b * in.Hkv + hk) * in.Nk + j) * in.Dk + d]; };
          const int64_t pos = i + in.offset;
          bool vis = true;
          if (in.causal && j > pos) vis = false;
          if (in.window && (pos - j > in.left || j - pos > in.right)) vis = false;  // no overflow
          if (!in.key_lengths.empty() && j >= in.key_lengths[b]) vis = false;
          if (!vis) continue;
          double sc = 0;
          if (in.fn == ScoreFn::dot || in.fn == ScoreFn::scaled_dot) {
            for (int64_t d = 0; d < in.D; ++d) sc += Q(d) * K(d);
            if (in.fn == ScoreFn::scaled_dot) sc *= in.scale;
          } else if (in.fn == ScoreFn::cosine) {
            double qq = 0, kk = 0, qk = 0;
            for (int64_t d = 0; d < in.D; ++d) {
              qq += Q(d) * Q(d);
              kk += K(d) * K(d);
              qk += Q(d) * K(d);
            }
            sc = (qq > 0 && kk > 0) ? qk / std::sqrt(qq * kk) / in.temperature : 0.0;
          } else if (in.fn == ScoreFn::general) {
            for (int64_t c = 0; c < in.Dk; ++c) sc += qw[c] * K(c);  // (qᵀ W) k
          } else {
            for (int64_t a = 0; a < in.A; ++a) {
              double u = 0;
              for (int64_t d = 0; d < in.D; ++d) u += in.wq[a * in.D + d] * Q(d);
              for (int64_t d = 0; d < in.Dk; ++d) u += in.wk[a * in.Dk + d] * K(d);
              sc += in.va[a] * std::tanh(u);
            }
          }
          if (!in.bias.empty()) sc += in.bias[((b * in.Hq + h) * in.Nq + i) * in.Nk + j];
          s[j] = sc;
        }
        double m = -kInf;
        for (double x : s) m = std::max(m, x);
        const int64_t row = (b * in.Hq + h) * in.Nq + i;
        if (m == -kInf) continue;  // nothing visible: zeros and lse -inf
        double z = 0;
        for (double x : s) z += std::exp(x - m);  // exp(-inf) = 0
        r.lse[row] = m + std::log(z);
        for (int64_t j = 0; j < in.Nk; ++j) {
          double p = std::exp(s[j] - m) / z;
          if (in.dropout > 0)
            p = dropout_keep(in.seed, in.dropout, b, h, i, j, in.Hq, in.Nq, in.Nk) ? p / (1 - in.dropout)
                                                                                  : 0.0;
          r.weights[row * in.Nk + j] = p;
          for (int64_t d = 0; d < in.Dv; ++d)
            r.out[row * in.Dv + d] += p * in.v[((b * in.Hkv + hk) * in.Nk + j) * in.Dv + d];
        }
      }
    }
  return r;
}

// Compares `got` (any rank) with the expected shape and values: shape first, then
// |got - want| <= atol + rtol |want| elementwise (-inf must match -inf exactly; NaN never
// passes). Prints the max errors and the first few mismatches.
inline ::testing::AssertionResult close_to(const Tensor& got, const Shape& want_shape,
                                           const std::vector<double>& want, double atol,
                                           double rtol) {
  if (!got.defined()) return ::testing::AssertionFailure() << "tensor is undefined";
  if (got.shape() != want_shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << ", expected "
                                         << shape_str(want_shape);
  std::vector<float> g = got.to_vector();
  if (g.size() != want.size())
    return ::testing::AssertionFailure() << g.size() << " values, expected " << want.size();
  double max_abs = 0, max_rel = 0;
  int bad = 0;
  std::ostringstream os;
  for (size_t n = 0; n < g.size(); ++n) {
    const double x = g[n], y = want[n];
    bool ok;
    if (std::isinf(y) || std::isinf(x)) {
      ok = x == y;
    } else {
      const double err = std::fabs(x - y);
      ok = err <= atol + rtol * std::fabs(y);  // false for NaN
      if (std::isfinite(err)) {
        max_abs = std::max(max_abs, err);
        if (y != 0) max_rel = std::max(max_rel, err / std::fabs(y));
      }
    }
    if (!ok && bad++ < 5) os << "\n  [" << n << "] got " << x << ", expected " << y;
  }
  if (bad)
    return ::testing::AssertionFailure() << bad << " of " << g.size() << " mismatch (max abs err "
                                         << max_abs << ", max rel err " << max_rel << ")"
                                         << os.str();
  return ::testing::AssertionSuccess();
}

// The same for plain double vectors (gradient checks).
inline ::testing::AssertionResult close_vec(const std::vector<double>& got,
                                            const std::vector<double>& want, double atol,
                                            double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << got.size() << " values, expected " << want.size();
  double max_abs = 0;
  int bad = 0;
  std::ostringstream os;
  for (size_t n = 0; n < got.size(); ++n) {
    const double err = std::fabs(got[n] - want[n]);
    if (std::isfinite(err)) max_abs = std::max(max_abs, err);
    if (!(err <= atol + rtol * std::fabs(want[n])) && bad++ < 5)
      os << "\n  [" << n << "] got " << got[n] << ", expected " << want[n];
  }
  if (bad)
    return ::testing::AssertionFailure() << bad << " of " << got.size()
                                         << " mismatch (max abs err " << max_abs << ")" << os.str();
  return ::testing::AssertionSuccess();
}

}  // namespace attn::test
