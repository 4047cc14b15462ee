// Every gradient of the reference attention (double overloads) against central finite
// differences of L = sum(dout * out), for every score function, with masks and dropout.
#include <gtest/gtest.h>

#include <functional>

#include "attention/attention_test_util.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::close_vec;

std::vector<double> random_vec(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

// A contiguous double-precision attention problem owning its buffers.
struct Problem64 {
  kernels::AttentionProblem p;
  ref::ScoreParams64 s;
  std::vector<double> q, k, v, w, wq, wk, va, bias, dout;
  std::vector<int32_t> key_lengths;

  Problem64(ScoreFn fn, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq, int64_t Nk, int64_t D,
            int64_t Dk, int64_t Dv, int64_t A, uint64_t seed) {
    p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Nq = Nq, p.Nk = Nk, p.D = D, p.Dk = Dk, p.Dv = Dv;
    const int64_t qs[3] = {Hq * Nq * D, Nq * D, D}, ks[3] = {Hkv * Nk * Dk, Nk * Dk, Dk},
                  vs[3] = {Hkv * Nk * Dv, Nk * Dv, Dv}, os[3] = {Hq * Nq * Dv, Nq * Dv, Dv};
    for (int d = 0; d < 3; ++d)
      p.q_stride[d] = qs[d], p.k_stride[d] = ks[d], p.v_stride[d] = vs[d], p.o_stride[d] = os[d];
    s.fn = fn;
    p.scale = fn == ScoreFn::scaled_dot ? 0.7 : 1.0;
    q = random_vec(B * Hq * Nq * D, seed);
    k = random_vec(B * Hkv * Nk * Dk, seed + 1);
    v = random_vec(B * Hkv * Nk * Dv, seed + 2);
    dout = random_vec(B * Hq * Nq * Dv, seed + 3);
    if (fn == ScoreFn::general) w = random_vec(D * Dk, seed + 4);
    if (fn == ScoreFn::additive) {
      s.A = A;
      wq = random_vec(A * D, seed + 5);
      wk = random_vec(A * Dk, seed + 6);
      va = random_vec(A, seed + 7);
    }
    if (fn == ScoreFn::cosine) s.temperature = 0.6;
  }

  void add_bias(uint64_t seed, int neg_inf_every) {
    bias = random_vec(p.B * p.Hq * p.Nq * p.Nk, seed, -1, 1);
    if (neg_inf_every > 0)
      for (size_t n = 0; n < bias.size(); n += neg_inf_every) bias[n] = -test::kInf;
    p.bias_stride[0] = p.Hq * p.Nq * p.Nk, p.bias_stride[1] = p.Nq * p.Nk;
    p.bias_stride[2] = p.Nk, p.bias_stride[3] = 1;
  }

  void wire() {
    s.w = w.empty() ? nullptr : w.data();
    s.wq = wq.empty() ? nullptr : wq.data();
    s.wk = wk.empty() ? nullptr : wk.data();
    s.va = va.empty() ? nullptr : va.data();
    s.bias = bias.empty() ? nullptr : bias.data();
    p.key_lengths = key_lengths.empty() ? nullptr : key_lengths.data();
  }

  void forward(std::vector<double>& out, std::vector<double>& lse) {
    wire();
    out.assign(p.B * p.Hq * p.Nq * p.Dv, 0.0);
    lse.assign(p.B * p.Hq * p.Nq, 0.0);
    ref::attention_forward(p, s, q.data(), k.data(), v.data(), out.data(), lse.data(), nullptr);
  }

  double loss() {
    std::vector<double> out, lse;
    forward(out, lse);
    double l = 0;
    for (size_t n = 0; n < out.size(); ++n) l += dout[n] * out[n];
    return l;
  }

  // Central differences of loss() with respect to every element of x (skipping -inf).
  std::vector<double> numeric(std::vector<double>& x, double eps = 1e-6) {
    std::vector<double> g(x.size(), 0.0);
    for (size_t n = 0; n < x.size(); ++n) {
      if (std::isinf(x[n])) continue;
      const double x0 = x[n];
      x[n] = x0 + eps;
      const double lp = loss();
      x[n] = x0 - eps;
      const double lm = loss();
      x[n] = x0;
      g[n] = (lp - lm) / (2 * eps);
    }
    return g;
  }
};

struct Analytic {
  std::vector<double> dq, dk, dv, dw, dwq, dwk, dva, dbias;
  double dtemperature = 0;
};

Analytic analytic(Problem64& pr) {
  std::vector<double> out, lse;
  pr.forward(out, lse);
  const auto& p = pr.p;
  Analytic a;
  a.dq.assign(pr.q.size(), 0), a.dk.assign(pr.k.size(), 0), a.dv.assign(pr.v.size(), 0);
  a.dw.assign(pr.w.size(), 0), a.dwq.assign(pr.wq.size(), 0), a.dwk.assign(pr.wk.size(), 0);
  a.dva.assign(pr.va.size(), 0);
  a.dbias.assign(p.B * p.Hq * p.Nq * p.Nk, -7);  // must be overwritten everywhere
  auto ptr = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
  ref::attention_backward(p, pr.s, pr.q.data(), pr.k.data(), pr.v.data(), out.data(), lse.data(),
                          pr.dout.data(), a.dq.data(), a.dk.data(), a.dv.data(), ptr(a.dw),
                          ptr(a.dwq), ptr(a.dwk), ptr(a.dva), a.dbias.data(), &a.dtemperature);
  return a;
}

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
