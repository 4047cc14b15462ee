// The SIMD element-wise kernels against their scalar formulas, on every compiled target,
// over lengths 0 .. 3 vectors + tails and odd counter offsets: results must be bit-identical.
#include "attn/kernels/cpu/elementwise.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/core/rng.h"

namespace attn::cpu {
namespace {

std::vector<float> test_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  Rng rng(seed);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  // Special values the products must treat as the scalar formula does.
  if (n > 3) {
    v[1] = -0.f;
    v[2] = std::numeric_limits<float>::infinity();
    v[3] = std::numeric_limits<float>::quiet_NaN();
  }
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

template <typename Fn>
void for_each_target(Fn&& fn) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    SCOPED_TRACE(hwy::TargetName(t));
    hwy::SetSupportedTargetsForTest(t);
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(ElementwiseKernels, DropoutMatchesScalarHashOnEveryTarget) {
  for_each_target([] {
    // p = 3 / 2^24 sits exactly on a representable threshold.
    for (double p : {0.1, 0.5, 0.9, 3.0 / 16777216.0, 0.0}) {
      for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 31, 33, 64, 100}) {
        for (uint64_t offset : {uint64_t{0}, uint64_t{5}, uint64_t{1} << 33}) {
          const uint64_t seed = 12345 + n;
          const auto x = test_values(n, seed);
          std::vector<float> y(static_cast<size_t>(n), -7.f);
          std::vector<uint8_t> keep(static_cast<size_t>(n), 9);
          const float scale = static_cast<float>(1.0 / (1.0 - p));
          dropout_forward(x.data(), y.data(), keep.data(), n, seed, offset, p, scale);
          int64_t kept = 0;
          for (int64_t i = 0; i < n; ++i) {
            const uint8_t k = counter_uniform(seed, offset + static_cast<uint64_t>(i)) >= p;
            ASSERT_EQ(keep[i], k) << "p " << p << " n " << n << " i " << i;
            ASSERT_TRUE(same_bits(y[i], x[i] * (static_cast<float>(k) * scale))) << i;
            kept += k;
          }
          if (n == 100 && p == 0.5) {
            EXPECT_GT(kept, 20);
            EXPECT_LT(kept, 80);
          }
          std::vector<float> dy = test_values(n, seed + 1), dx(static_cast<size_t>(n), 0.5f);
          dropout_backward(dy.data(), keep.data(), dx.data(), n, scale, /*accumulate=*/true);
          for (int64_t i = 0; i < n; ++i) {
            // The compiler may fuse the multiply-add on FMA targets: either rounding is right.
            const float m = static_cast<float>(keep[i]) * scale;
            ASSERT_TRUE(same_bits(dx[i], 0.5f + dy[i] * m) || same_bits(dx[i], std::fma(dy[i], m, 0.5f)))
                << i << " n " << n;
          }
          dropout_backward(dy.data(), keep.data(), dx.data(), n, scale, /*accumulate=*/false);
          for (int64_t i = 0; i < n; ++i)
            ASSERT_TRUE(same_bits(dx[i], dy[i] * (static_cast<float>(keep[i]) * scale))) << i;
        }
      }
    }
  });
}

TEST(ElementwiseKernels, ReluMatchesScalarOnEveryTarget) {
  for_each_target([] {
    for (int64_t n : {0, 1, 5, 16, 17, 48, 51}) {
      for (int64_t mis : {0, 1, 3}) {  // misaligned starts
        auto xs = test_values(n + mis, 7 + n);
        const float* x = xs.data() + mis;
        std::vector<float> y(static_cast<size_t>(n + mis), 3.f);
        relu_forward(x, y.data() + mis, n);
        for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same_bits(y[mis + i], x[i] > 0 ? x[i] : 0.f)) << i;
        auto dy = test_values(n, 99 + n);
        std::vector<float> dx(static_cast<size_t>(n), 0.25f);
        relu_backward(y.data() + mis, dy.data(), dx.data(), n, /*accumulate=*/true);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_TRUE(same_bits(dx[i], 0.25f + dy[i] * (y[mis + i] > 0 ? 1.f : 0.f))) << i;
        relu_backward(y.data() + mis, dy.data(), dx.data(), n, /*accumulate=*/false);
        for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same_bits(dx[i], dy[i] * (y[mis + i] > 0 ? 1.f : 0.f))) << i;
      }
    }
  });
}

TEST(ElementwiseKernels, LayerNormMatchesDoubleFormulaOnEveryTarget) {
  for_each_target([] {
    for (int64_t E : {1, 7, 16, 33, 256})
      for (bool affine : {false, true})
        for (bool acc : {false, true}) {
          const int64_t rows = 3;
          auto x = test_values(rows * E + 4, 11 + E);
          x.erase(x.begin(), x.begin() + 4);  // no special values
          for (int64_t i = 0; i < rows * E; ++i) x[i] = 3.f + 2.f * x[i];  // mean far from 0
          auto w = test_values(E + 4, 12), b = test_values(E + 4, 13), dy = test_values(rows * E + 4, 14);
          w.erase(w.begin(), w.begin() + 4);
          b.erase(b.begin(), b.begin() + 4);
          dy.erase(dy.begin(), dy.begin() + 4);
          const float* pw = affine ? w.data() : nullptr;
          const float* pb = affine ? b.data() : nullptr;
          std::vector<float> y(static_cast<size_t>(rows * E));
          std::vector<double> stats(static_cast<size_t>(2 * rows));
          layer_norm_forward(x.data(), pw, pb, y.data(), stats.data(), rows, E, 1e-5);
          std::vector<float> dx(static_cast<size_t>(rows * E), 0.5f);
          layer_norm_backward_dx(x.data(), pw, dy.data(), stats.data(), dx.data(), rows, E, acc);
          for (int64_t r = 0; r < rows; ++r) {
            // The formulas in double, summed in order.
            double mu = 0, var = 0, m1 = 0, m2 = 0;
            for (int64_t j = 0; j < E; ++j) mu += x[r * E + j];
            mu /= static_cast<double>(E);
            for (int64_t j = 0; j < E; ++j) var += (x[r * E + j] - mu) * (x[r * E + j] - mu);
            const double rstd = 1.0 / std::sqrt(var / static_cast<double>(E) + 1e-5);
            EXPECT_NEAR(stats[2 * r], mu, 1e-12 * std::abs(mu));
            EXPECT_NEAR(stats[2 * r + 1], rstd, 1e-12 * rstd);
            for (int64_t j = 0; j < E; ++j) {
              const double xh = (x[r * E + j] - mu) * rstd;
              const double dxh = dy[r * E + j] * (affine ? w[j] : 1.0);
              m1 += dxh / static_cast<double>(E);
              m2 += dxh * xh / static_cast<double>(E);
              const double yr = affine ? xh * w[j] + b[j] : xh;
              EXPECT_NEAR(y[r * E + j], yr, 2e-7 * std::abs(yr) + 1e-12) << "E " << E << " j " << j;
            }
            for (int64_t j = 0; j < E; ++j) {
              const double xh = (x[r * E + j] - mu) * rstd;
              const double dxh = dy[r * E + j] * (affine ? w[j] : 1.0);
              const double d = rstd * (dxh - m1 - xh * m2) + (acc ? 0.5 : 0.0);
              EXPECT_NEAR(dx[r * E + j], d, 4e-7 * (std::abs(d) + rstd * (std::abs(dxh) + std::abs(m1))) + 1e-12)
                  << "E " << E << " j " << j;
            }
          }
        }
  });
}

TEST(ElementwiseKernels, AdamMatchesScalarOnEveryTarget) {
  for_each_target([] {
    for (bool decoupled : {false, true})
      for (float wd : {0.f, 0.01f})
        for (int64_t n : {1, 15, 16, 37}) {
          AdamStepScalars s{0.9f, 0.98f, 0.1f, 0.02f, 1e-8f, wd, 1.f - 1e-3f * wd, 1e-3f / 0.19f, 0.2f, decoupled};
          const auto pv = test_values(n + 4, 3);  // the first 4 hold special values: skipped
          std::vector<float> p0(pv.begin() + 4, pv.end()), g = test_values(n + 4, 4), m = test_values(n + 4, 5), v(static_cast<size_t>(n));
          g.erase(g.begin(), g.begin() + 4);
          m.erase(m.begin(), m.begin() + 4);
          for (int64_t j = 0; j < n; ++j) v[j] = 0.01f * static_cast<float>(j + 1);
          std::vector<float> pk = p0, mk = m, vk = v;
          adam_update(pk.data(), g.data(), mk.data(), vk.data(), n, s);
          for (int64_t j = 0; j < n; ++j) {
            // The scalar formula; the kernel may differ by fused multiply-add rounding only.
            float gj = g[j], pj = p0[j];
            if (decoupled) pj *= s.decay;
            else if (wd != 0) gj += wd * pj;
            const float mj = m[j] * s.beta1 + s.one_minus_beta1 * gj;
            const float vj = v[j] * s.beta2 + s.one_minus_beta2 * (gj * gj);
            pj -= s.step_size * (mj / (std::sqrt(vj) / s.bc2_sqrt + s.eps));
            EXPECT_NEAR(mk[j], mj, 3e-7f * std::abs(mj) + 1e-30f) << j;
            EXPECT_NEAR(vk[j], vj, 3e-7f * std::abs(vj)) << j;
            EXPECT_NEAR(pk[j], pj, 3e-7f * std::abs(pj) + 1e-9f) << j;
            EXPECT_NE(pk[j], p0[j]) << "the step moved the parameter";
          }
        }
  });
}

TEST(ElementwiseKernels, FusedDropoutKernelsMatchComposedOnEveryTarget) {
  for_each_target([] {
    for (double p : {0.1, 0.5, 3.0 / 16777216.0}) {
      for (int64_t n : {0, 1, 7, 16, 17, 33, 100}) {
        for (uint64_t offset : {uint64_t{0}, uint64_t{5}, uint64_t{1} << 33}) {
          const uint64_t seed = 777 + n;
          const float scale = static_cast<float>(1.0 / (1.0 - p));
          const auto x = test_values(n, seed), res = test_values(n, seed + 2);
          // dropout_add = res + dropout_forward(x): the same keep bytes, the same floats (an
          // FMA-contracted scalar formula is also right).
          std::vector<float> y(static_cast<size_t>(n), -7.f), yd(static_cast<size_t>(n));
          std::vector<uint8_t> keep(static_cast<size_t>(n), 9), keep_d(static_cast<size_t>(n), 9);
          dropout_add_forward(res.data(), x.data(), y.data(), keep.data(), n, seed, offset, p, scale);
          dropout_forward(x.data(), yd.data(), keep_d.data(), n, seed, offset, p, scale);
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(keep[i], keep_d[i]) << "p " << p << " n " << n << " i " << i;
            const float m = static_cast<float>(keep[i]) * scale;
            ASSERT_TRUE(same_bits(y[i], res[i] + yd[i]) || same_bits(y[i], std::fma(x[i], m, res[i])))
                << i << ": " << y[i] << " vs " << res[i] + yd[i];
          }
          // relu_dropout = dropout_forward(relu_forward(x)), bit for bit, no mask.
          std::vector<float> r(static_cast<size_t>(n)), want(static_cast<size_t>(n)), got(static_cast<size_t>(n), 3.f);
          relu_forward(x.data(), r.data(), n);
          dropout_forward(r.data(), want.data(), keep_d.data(), n, seed, offset, p, scale);
          relu_dropout_forward(x.data(), got.data(), n, seed, offset, p, scale);
          for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same_bits(got[i], want[i])) << i << ": " << got[i] << " vs " << want[i];
          // Its backward = relu_backward(dropout_backward(dy)), bit for bit (fresh), or with an FMA (added).
          const auto dy = test_values(n, seed + 3);
          std::vector<float> d1(static_cast<size_t>(n)), dwant(static_cast<size_t>(n)), dgot(static_cast<size_t>(n), 0.5f);
          dropout_backward(dy.data(), keep_d.data(), d1.data(), n, scale, false);
          relu_backward(r.data(), d1.data(), dwant.data(), n, false);
          relu_dropout_backward(got.data(), dy.data(), dgot.data(), n, scale, /*accumulate=*/false);
          for (int64_t i = 0; i < n; ++i)
            ASSERT_TRUE(same_bits(dgot[i], dwant[i])) << i << ": " << dgot[i] << " vs " << dwant[i];
          std::fill(dgot.begin(), dgot.end(), 0.5f);
          relu_dropout_backward(got.data(), dy.data(), dgot.data(), n, scale, /*accumulate=*/true);
          for (int64_t i = 0; i < n; ++i) {
            const float m = got[i] > 0 ? scale : 0.f;
            ASSERT_TRUE(same_bits(dgot[i], 0.5f + dy[i] * m) || same_bits(dgot[i], std::fma(dy[i], m, 0.5f))) << i;
          }
        }
      }
    }
  });
}

TEST(ElementwiseKernels, SumRowsAndLayerNormParamGradsMatchScalarOnEveryTarget) {
  for_each_target([] {
    for (int64_t E : {1, 7, 16, 33, 256})
      for (bool acc : {false, true}) {
        const int64_t rows = 5;
        auto src = test_values(rows * E + 4, 21 + E);
        src.erase(src.begin(), src.begin() + 4);  // no special values
        // sum_rows: the scalar loop, rows added in order.
        std::vector<float> got(static_cast<size_t>(E), 0.25f), want(static_cast<size_t>(E), acc ? 0.25f : 0.f);
        sum_rows(src.data(), E, got.data(), rows, E, acc);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < E; ++j) want[j] += src[r * E + j];
        for (int64_t j = 0; j < E; ++j) ASSERT_TRUE(same_bits(got[j], want[j])) << "E " << E << " j " << j;
        // A column range of a wider matrix (row stride E), as a thread's share.
        if (E > 3) {
          std::vector<float> part(static_cast<size_t>(E - 3), 0.25f);
          sum_rows(src.data() + 3, E, part.data(), rows, E - 3, acc);
          for (int64_t j = 3; j < E; ++j) ASSERT_TRUE(same_bits(part[j - 3], want[j])) << "E " << E << " j " << j;
        }
        // layer_norm_backward_wb: the scalar loops of autograd/layer_norm.cpp.
        auto x = test_values(rows * E + 4, 31 + E);
        x.erase(x.begin(), x.begin() + 4);
        std::vector<double> stats(static_cast<size_t>(2 * rows));
        for (int64_t r = 0; r < rows; ++r) {
          stats[2 * r] = 0.1 * static_cast<double>(r);
          stats[2 * r + 1] = 1.5 + 0.01 * static_cast<double>(r);
        }
        std::vector<float> dw(static_cast<size_t>(E), 0.5f), db(static_cast<size_t>(E), -0.5f);
        std::vector<float> dw_want = dw, db_want = db;
        layer_norm_backward_wb(x.data(), src.data(), E, stats.data(), dw.data(), db.data(), rows, E);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < E; ++j) {
            dw_want[j] += static_cast<float>(src[r * E + j] * ((x[r * E + j] - stats[2 * r]) * stats[2 * r + 1]));
            db_want[j] += src[r * E + j];
          }
        for (int64_t j = 0; j < E; ++j) {
          ASSERT_TRUE(same_bits(dw[j], dw_want[j])) << "E " << E << " j " << j << ": " << dw[j] << " vs " << dw_want[j];
          ASSERT_TRUE(same_bits(db[j], db_want[j])) << "E " << E << " j " << j;
        }
        if (E > 3) {
          std::vector<float> dw_part(static_cast<size_t>(E - 3), 0.5f), db_part(static_cast<size_t>(E - 3), -0.5f);
          layer_norm_backward_wb(x.data() + 3, src.data() + 3, E, stats.data(), dw_part.data(), db_part.data(), rows,
                                 E - 3);
          for (int64_t j = 3; j < E; ++j) {
            ASSERT_TRUE(same_bits(dw_part[j - 3], dw_want[j])) << "E " << E << " j " << j;
            ASSERT_TRUE(same_bits(db_part[j - 3], db_want[j])) << "E " << E << " j " << j;
          }
        }
        // relu_dropout_backward_bias = relu_dropout_backward then sum_rows, bit for bit, in place,
        // also over a column range.
        {
          auto y = test_values(rows * E + 4, 41 + E);
          y.erase(y.begin(), y.begin() + 4);
          const float scale = 1.25f;
          std::vector<float> dz_want(static_cast<size_t>(rows * E)), db_sum(static_cast<size_t>(E), 0.75f);
          relu_dropout_backward(y.data(), src.data(), dz_want.data(), rows * E, scale, false);
          sum_rows(dz_want.data(), E, db_sum.data(), rows, E, acc);
          for (int64_t c0 : {int64_t{0}, int64_t{E > 3 ? 3 : 0}}) {
            std::vector<float> dz = src, dbf(static_cast<size_t>(E), 0.75f);
            relu_dropout_backward_bias(y.data() + c0, dz.data() + c0, dz.data() + c0, dbf.data() + c0, E, rows, E - c0,
                                       scale, acc);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t j = c0; j < E; ++j)
                ASSERT_TRUE(same_bits(dz[r * E + j], dz_want[r * E + j])) << "E " << E << " r " << r << " j " << j;
            for (int64_t j = c0; j < E; ++j) ASSERT_TRUE(same_bits(dbf[j], db_sum[j])) << "E " << E << " j " << j;
          }
        }
        std::vector<float> only_db(static_cast<size_t>(E), -0.5f);
        layer_norm_backward_wb(x.data(), src.data(), E, stats.data(), nullptr, only_db.data(), rows, E);
        for (int64_t j = 0; j < E; ++j) ASSERT_TRUE(same_bits(only_db[j], db_want[j])) << j;
      }
  });
}

}  // namespace
}  // namespace attn::cpu
