// Every gradient of the reference attention (double overloads) against central finite
// differences of L = sum(dout * out), for every score function, with masks and dropout.
#include <gtest/gtest.h>

#include <functional>

#include "attention/attention_test_util.h"
#include "attention/problem64.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::analytic;
using test::Analytic;
using test::close_vec;
using test::Problem64;

// FD error is O(eps^2) truncation + O(1e-16 / eps) rounding: about 1e-10 here.
constexpr double kAtol = 1e-8, kRtol = 1e-6;

void check_all_gradients(Problem64& pr, const std::string& what) {
  SCOPED_TRACE(what);
  Analytic a = analytic(pr);
  EXPECT_TRUE(close_vec(a.dq, pr.numeric(pr.q), kAtol, kRtol)) << "dq";
  EXPECT_TRUE(close_vec(a.dk, pr.numeric(pr.k), kAtol, kRtol)) << "dk";
  EXPECT_TRUE(close_vec(a.dv, pr.numeric(pr.v), kAtol, kRtol)) << "dv";
  if (!pr.w.empty()) {
    EXPECT_TRUE(close_vec(a.dw, pr.numeric(pr.w), kAtol, kRtol)) << "dw";
  }
  if (!pr.wq.empty()) {
    EXPECT_TRUE(close_vec(a.dwq, pr.numeric(pr.wq), kAtol, kRtol)) << "dwq";
    EXPECT_TRUE(close_vec(a.dwk, pr.numeric(pr.wk), kAtol, kRtol)) << "dwk";
    EXPECT_TRUE(close_vec(a.dva, pr.numeric(pr.va), kAtol, kRtol)) << "dva";
  }
  if (!pr.bias.empty()) {
    EXPECT_TRUE(close_vec(a.dbias, pr.numeric(pr.bias), kAtol, kRtol)) << "dbias";
  } else {
    // Without a bias, dbias is still d(loss)/d(score): perturb a zero bias.
    pr.add_bias(0, 0);
    std::fill(pr.bias.begin(), pr.bias.end(), 0.0);
    EXPECT_TRUE(close_vec(a.dbias, pr.numeric(pr.bias), kAtol, kRtol)) << "dbias (zero bias)";
    pr.bias.clear();
  }
  if (pr.s.fn == ScoreFn::cosine) {
    const double t0 = pr.s.temperature, eps = 1e-6;
    pr.s.temperature = t0 + eps;
    const double lp = pr.loss();
    pr.s.temperature = t0 - eps;
    const double lm = pr.loss();
    pr.s.temperature = t0;
    const double num = (lp - lm) / (2 * eps);
    EXPECT_NEAR(a.dtemperature, num, kAtol + kRtol * std::fabs(num)) << "dtemperature";
    EXPECT_NE(a.dtemperature, 0.0);
  }
  for (double x : a.dq) ASSERT_TRUE(std::isfinite(x));
}

const ScoreFn kAllFns[] = {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine, ScoreFn::general,
                           ScoreFn::additive};

Problem64 make(ScoreFn fn, uint64_t seed = 11) {
  // Hq = 4 over Hkv = 2 (GQA), Nq != Nk, D != Dk where allowed.
  const bool own_dk = fn == ScoreFn::general || fn == ScoreFn::additive;
  return Problem64(fn, 2, 4, 2, 3, 5, 3, own_dk ? 2 : 3, 2, 3, seed);
}

TEST(AttentionGradients, NoMask) {
  for (ScoreFn fn : kAllFns) {
    Problem64 pr = make(fn);
    check_all_gradients(pr, score_fn_name(fn));
  }
}

TEST(AttentionGradients, CausalWindowKeyLengths) {
  for (ScoreFn fn : kAllFns) {
    Problem64 pr = make(fn, 21);
    pr.p.causal = true, pr.p.query_offset = 1;
    pr.p.has_window = true, pr.p.window_left = 1, pr.p.window_right = 0;
    pr.key_lengths = {5, 2};
    check_all_gradients(pr, score_fn_name(fn));
  }
}

TEST(AttentionGradients, BiasWithNegInfAndFullyMaskedRows) {
  for (ScoreFn fn : kAllFns) {
    Problem64 pr = make(fn, 31);
    pr.add_bias(77, 4);
    pr.p.causal = true, pr.p.query_offset = -1;  // row 0 sees nothing
    check_all_gradients(pr, score_fn_name(fn));
    Analytic a = analytic(pr);
    // Row 0 of every (b, h) has no visible key: its dq and dbias are exactly 0.
    for (int64_t bh = 0; bh < pr.p.B * pr.p.Hq; ++bh) {
      for (int64_t d = 0; d < pr.p.D; ++d) EXPECT_EQ(a.dq[bh * pr.p.Nq * pr.p.D + d], 0.0);
      for (int64_t j = 0; j < pr.p.Nk; ++j) EXPECT_EQ(a.dbias[bh * pr.p.Nq * pr.p.Nk + j], 0.0);
    }
  }
}

TEST(AttentionGradients, Dropout) {
  for (ScoreFn fn : kAllFns) {
    Problem64 pr = make(fn, 41);
    pr.p.dropout = 0.3, pr.p.seed = 1234;
    pr.p.causal = true, pr.p.query_offset = 2;
    check_all_gradients(pr, score_fn_name(fn));
  }
}

TEST(AttentionGradients, MultiQueryAndEqualHeads) {
  for (int64_t hkv : {1, 4}) {
    Problem64 pr(ScoreFn::scaled_dot, 1, 4, hkv, 4, 3, 2, 2, 3, 0, 51);
    pr.key_lengths = {2};
    check_all_gradients(pr, "Hkv=" + std::to_string(hkv));
  }
}

TEST(AttentionGradients, CosineZeroNormRowsGiveZeroNotNaN) {
  Problem64 pr(ScoreFn::cosine, 1, 1, 1, 2, 3, 3, 3, 2, 0, 61);
  for (int d = 0; d < 3; ++d) pr.q[d] = 0, pr.k[3 + d] = 0;  // q_0 = 0, k_1 = 0
  Analytic a = analytic(pr);
  for (double x : a.dq) EXPECT_TRUE(std::isfinite(x));
  for (double x : a.dk) EXPECT_TRUE(std::isfinite(x));
  for (int d = 0; d < 3; ++d) EXPECT_EQ(a.dq[d], 0.0);  // its scores are the constant 0
  for (int d = 0; d < 3; ++d) EXPECT_EQ(a.dk[3 + d], 0.0);
  // The other rows still check out against finite differences.
  std::vector<double> num_q = pr.numeric(pr.q);
  for (int d = 3; d < 6; ++d) EXPECT_NEAR(a.dq[d], num_q[d], 1e-8);
  EXPECT_TRUE(std::isfinite(a.dtemperature));
}

TEST(AttentionGradients, FloatOverloadMatchesDouble) {
  // The float entry points run the same template: same gradients to f32 rounding.
  Problem64 pr = make(ScoreFn::additive, 71);
  pr.p.causal = true, pr.p.query_offset = 2;
  Analytic a = analytic(pr);
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  auto d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  std::vector<float> q = f(pr.q), k = f(pr.k), v = f(pr.v), wq = f(pr.wq), wk = f(pr.wk),
                     va = f(pr.va), dout = f(pr.dout);
  ref::ScoreParams s;
  s.fn = pr.s.fn, s.wq = wq.data(), s.wk = wk.data(), s.va = va.data(), s.A = pr.s.A;
  std::vector<float> out(pr.dout.size()), lse(pr.p.B * pr.p.Hq * pr.p.Nq);
  ref::attention_forward(pr.p, s, q.data(), k.data(), v.data(), out.data(), lse.data(), nullptr);
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), dwq(wq.size()), dwk(wk.size()),
      dva(va.size());
  ref::attention_backward(pr.p, s, q.data(), k.data(), v.data(), out.data(), lse.data(),
                          dout.data(), dq.data(), dk.data(), dv.data(), nullptr, dwq.data(),
                          dwk.data(), dva.data(), nullptr, nullptr);
  // Inputs rounded to f32 (relative 6e-8) move the gradients by a few 1e-7.
  EXPECT_TRUE(close_vec(d(dq), a.dq, 2e-6, 2e-6));
  EXPECT_TRUE(close_vec(d(dk), a.dk, 2e-6, 2e-6));
  EXPECT_TRUE(close_vec(d(dv), a.dv, 2e-6, 2e-6));
  EXPECT_TRUE(close_vec(d(dwq), a.dwq, 2e-6, 2e-6));
  EXPECT_TRUE(close_vec(d(dwk), a.dwk, 2e-6, 2e-6));
  EXPECT_TRUE(close_vec(d(dva), a.dva, 2e-6, 2e-6));
}

}  // namespace
}  // namespace attn
