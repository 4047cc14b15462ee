// Logits of 1e4, 1e10 and 1e30 (finite): the fused paths against the double reference for the
// forward (out, lse, weights; f32 and bf16, decode split), and the backward of the fused
// backend (general with W = I, so that its scores are the dot cases'). At such magnitudes an f32 score is known only to ulp(S)/2 (0.5e-3 at 1e4, 1e22 at
// 1e30), so the cases are built with exactly representable scores whose softmax does not
// depend on rounding: each row's largest logit is shared by several keys (an exact tie: equal
// k rows or equal bias entries) and every other key sits at least S/2 lower (weight exp(−S/2)
// = 0). The answer is then an even split over the tied keys, which f32 gets to ~1e-7; the
// tolerances are the f32 bound of the rest of the suite (1e-5 of each tensor's largest
// element). A rounded lse (m + log 2 = m at 1e10) once gave tied keys weight 1 each.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "attention_test_util.h"
#include "attn/attention/attention.h"
#include "attn/core/error.h"
#include "attn/core/threading.h"

namespace attn {
namespace {

constexpr double kTol = 1e-5;

// |got − want| ≤ tol · max|want| elementwise, shapes first; infinities must match exactly.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<float> g = got.contiguous().to_vector(), w = want.contiguous().to_vector();
  double scale = 0;
  for (float x : w)
    if (std::isfinite(x)) scale = std::max(scale, std::fabs(double(x)));
  if (scale == 0) scale = 1;
  int bad = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const bool ok = std::isfinite(w[i]) ? std::fabs(double(g[i]) - w[i]) <= tol * scale : g[i] == w[i];
    if (!ok && bad++ < 3) ADD_FAILURE() << what << "[" << i << "]: got " << g[i] << " want " << w[i];
  }
  EXPECT_EQ(bad, 0) << what << ": elements off (max |want| " << scale << ")";
}

// lse per element to `rel` (its own f32 rounding is 6e-8) plus `abs`.
void expect_lse_close(const Tensor& got, const Tensor& want, double rel = 1e-6, double abs = 0) {
  ASSERT_EQ(got.shape(), want.shape());
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < w.size(); ++i) {
    if (std::isfinite(w[i]))
      EXPECT_NEAR(g[i], w[i], rel * std::fabs(w[i]) + abs) << "lse[" << i << "]";
    else
      EXPECT_EQ(g[i], w[i]) << "lse[" << i << "]";
  }
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float x : t.contiguous().to_vector()) m = std::max(m, std::fabs(double(x)));
  return m;
}

enum class Source { bias, dot };  // where the huge logits come from

struct HugeCase {
  ScoreFn fn = ScoreFn::dot;
  Source source = Source::bias;
  double S = 1e4;  // logit scale
  int64_t B = 2, Hq = 2, Hkv = 1, Nq = 9, Nk = 70, D = 16, Dv = 8;
  bool causal = false;
  int64_t offset = 0;
  bool window = false;
  bool key_lengths = false;
  int threads = 1;

  std::string name() const {
    std::ostringstream s;
    s << score_fn_name(fn) << (source == Source::bias ? " bias" : " q·k") << " S " << S << " B" << B
      << " Hq" << Hq << " Hkv" << Hkv << " Nq" << Nq << " Nk" << Nk << (causal ? " causal" : "")
      << (window ? " window" : "") << (key_lengths ? " key_lengths" : "") << " threads " << threads;
    return s.str();
  }
};

struct HugeInputs {
  Tensor q, k, v, dout;
  AttentionExtras ex;
  AttentionOptions opts;
};

double pow2_near(double x) { return std::exp2(std::round(std::log2(x))); }

// Keys j with j % 3 == 0 are the "tied" keys. u (even components) and w (odd ones) are
// orthogonal integer directions; e_j is a unit vector on an odd component. Queries have no odd
// components, so q·(u + e_j) is the same for every j while the keys differ (else dq, a sum of
// dS_ij k_j with Σ_j dS_ij = 0, would be exactly 0).
HugeInputs make_inputs(const HugeCase& c) {
  HugeInputs in;
  const int64_t D = c.D;
  std::vector<float> u(D), w(D);
  for (int64_t d = 0; d < D; ++d) u[d] = d % 2 == 0 ? 1.f : 0.f, w[d] = d % 2 == 0 ? 0.f : 1.f;
  auto u_plus_e = [&](int64_t j, int64_t d) { return u[d] + (d == 2 * (j % (D / 2)) + 1 ? 1.f : 0.f); };
  const double uu = D / 2;  // u·u
  std::vector<float> q(c.B * c.Hq * c.Nq * D), k(c.B * c.Hkv * c.Nk * D);
  const double scale = c.fn == ScoreFn::scaled_dot ? 1.0 / std::sqrt(double(D)) : 1.0;
  if (c.source == Source::bias) {
    // q small integers, k rows u + e_j: q·k is the same for every key of a row; the bias
    // decides: +S on the tied keys, −S or S/2 elsewhere.
    Rng rng(7);
    for (size_t e = 0; e < q.size(); ++e)
      q[e] = e % 2 == 0 ? static_cast<float>(int(rng.uniform() * 5) - 2) : 0.f;
    for (int64_t r = 0; r < c.B * c.Hkv * c.Nk; ++r)
      for (int64_t d = 0; d < D; ++d) k[r * D + d] = u_plus_e(r % c.Nk, d);
    std::vector<float> bias(c.B * c.Hq * c.Nq * c.Nk);
    for (size_t e = 0; e < bias.size(); ++e) {
      const int64_t j = e % c.Nk;
      bias[e] = static_cast<float>(j % 3 == 0 ? c.S : (j % 2 == 0 ? -c.S : c.S / 2));
    }
    in.ex.bias = Tensor::from_vector(bias, {c.B, c.Hq, c.Nq, c.Nk});
  } else if (c.fn == ScoreFn::cosine) {
    // Tied keys along u + e_j (|u + e_j|² = D/2 + 1 for every j, so equal cosines with u),
    // the others along w, lengths powers of two; queries along u or (odd rows) w; temperature
    // 1/S. A u row scores S/√(1 + 2/D) on the tied keys and 0 on the others; a w row S on
    // the w keys and S/√(D/2 (D/2 + 1)) on the tied ones.
    for (int64_t r = 0; r < c.B * c.Hkv * c.Nk; ++r) {
      const int64_t j = r % c.Nk;
      const float len = std::exp2(static_cast<float>(j % 4) - 1.f);
      for (int64_t d = 0; d < D; ++d) k[r * D + d] = len * (j % 3 == 0 ? u_plus_e(j, d) : w[d]);
    }
    for (int64_t r = 0; r < c.B * c.Hq * c.Nq; ++r)
      for (int64_t d = 0; d < D; ++d) q[r * D + d] = 2.f * (r % 2 == 0 ? u[d] : w[d]);
    in.opts.temperature = 1.0 / c.S;
  } else {
    // q = ±ρu, k = ±σ(u + e_j) with ρσ·u·u·scale ≈ S (powers of two: every product and sum
    // exact).
    const double rs = pow2_near(c.S / (uu * scale));
    const float rho = static_cast<float>(std::sqrt(pow2_near(rs))), sigma = static_cast<float>(rs / rho);
    for (int64_t r = 0; r < c.B * c.Hkv * c.Nk; ++r)
      for (int64_t d = 0; d < D; ++d) k[r * D + d] = (r % c.Nk % 3 == 0 ? sigma : -sigma) * u_plus_e(r % c.Nk, d);
    for (int64_t r = 0; r < c.B * c.Hq * c.Nq; ++r)
      for (int64_t d = 0; d < D; ++d) q[r * D + d] = (r % 2 == 0 ? rho : -rho) * u[d];
  }
  in.q = Tensor::from_vector(q, {c.B, c.Hq, c.Nq, D});
  in.k = Tensor::from_vector(k, {c.B, c.Hkv, c.Nk, D});
  in.v = test::random_tensor({c.B, c.Hkv, c.Nk, c.Dv}, 11);
  in.dout = test::random_tensor({c.B, c.Hq, c.Nq, c.Dv}, 12);
  if (c.fn == ScoreFn::general) {  // W = I: q' = q W = q exactly, the dot cases' scores
    std::vector<float> eye(D * D, 0.f);
    for (int64_t d = 0; d < D; ++d) eye[d * D + d] = 1.f;
    in.ex.w = Tensor::from_vector(eye, {D, D});
  }
  in.opts.score = c.fn;
  in.opts.causal = c.causal;
  in.opts.query_offset = c.offset;
  if (c.window) in.opts.window = Window{20, 3};
  if (c.key_lengths) {
    std::vector<int32_t> kl(c.B);
    for (int64_t b = 0; b < c.B; ++b) kl[b] = static_cast<int32_t>(b == 1 ? 0 : c.Nk - 5);
    in.ex.key_lengths = Tensor::from_vector_i32(kl, {c.B});
  }
  return in;
}

AttentionOutput forward(const HugeInputs& in, AttentionBackend b, bool weights) {
  AttentionOptions o = in.opts;
  o.backend = b;
  o.need_weights = weights;
  return attention_forward(in.q, in.k, in.v, in.ex, o);
}

void check_case(const HugeCase& c) {
  SCOPED_TRACE(c.name());
  const HugeInputs in = make_inputs(c);
  set_num_threads(c.threads);
  const AttentionOutput want = forward(in, AttentionBackend::reference, true);
  const AttentionOutput fused = forward(in, AttentionBackend::fused, false);
  const AttentionOutput fused_w = forward(in, AttentionBackend::fused, true);
  expect_close(fused.out, want.out, kTol, "out");
  expect_lse_close(fused.lse, want.lse);
  expect_close(fused_w.weights, want.weights, kTol, "weights");

  // The fused backward (from the fused forward's out and lse) against the reference.
  AttentionOptions o = in.opts;
  o.backend = AttentionBackend::reference;
  const AttentionGrads gw = attention_backward(in.q, in.k, in.v, in.ex, o, want, in.dout);
  o.backend = AttentionBackend::fused;
  const AttentionGrads ga = attention_backward(in.q, in.k, in.v, in.ex, o, fused, in.dout);
  expect_close(ga.dq, gw.dq, kTol, "dq");
  expect_close(ga.dk, gw.dk, kTol, "dk");
  expect_close(ga.dv, gw.dv, kTol, "dv");
  if (in.ex.bias.defined()) expect_close(ga.dbias, gw.dbias, kTol, "dbias");
  if (c.fn == ScoreFn::general) expect_close(ga.dw, gw.dw, kTol, "dw");
  // dT = −Σ_ij dS_ij c_ij / T² is 0 in exact arithmetic here (a row's tied keys share one
  // cosine and Σ_j dS_ij = 0), so both sides are rounding residue: compared against the size
  // of its terms, Σ_ij |dS_ij| / T² ≤ rows · 2 max|dO_i·v_j| · S² (Σ_j P_ij = 1, |c| ≤ 1).
  const double S2 = c.fn == ScoreFn::cosine ? c.S * c.S : 0.0;
  const double dp_max = double(c.Dv) * max_abs(in.dout) * max_abs(in.v);
  EXPECT_NEAR(ga.dtemperature, gw.dtemperature, kTol * double(c.B * c.Hq * c.Nq) * 2 * dp_max * S2);
  set_num_threads(1);
}

const double kScales[] = {1e4, 1e10, 1e30};

TEST(HugeLogits, BiasDrivenEveryScoreFn) {
  for (double S : kScales)
    for (ScoreFn fn : {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine, ScoreFn::general}) {
      HugeCase c;
      c.fn = fn, c.S = S;
      check_case(c);
    }
}

TEST(HugeLogits, DotDrivenEveryScoreFn) {
  for (double S : kScales)
    for (ScoreFn fn : {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine, ScoreFn::general}) {
      HugeCase c;
      c.fn = fn, c.source = Source::dot, c.S = S;
      check_case(c);
    }
}

TEST(HugeLogits, MasksAndGroupedHeads) {
  for (double S : kScales) {
    HugeCase c;
    c.S = S, c.Hq = 4, c.Hkv = 2, c.Nq = 30, c.causal = true, c.offset = 40, c.key_lengths = true,
    c.threads = 2;
    check_case(c);
    c.fn = ScoreFn::cosine, c.source = Source::dot, c.causal = false, c.window = true;
    check_case(c);
  }
}

// One query against 600 keys on 2 threads: the forward splits the keys and merges the
// partial (max, sum) pairs.
TEST(HugeLogits, DecodeSplitAcrossThreads) {
  for (double S : kScales)
    for (Source src : {Source::bias, Source::dot}) {
      HugeCase c;
      c.S = S, c.source = src, c.B = 1, c.Hq = 1, c.Nq = 1, c.Nk = 600, c.threads = 2;
      check_case(c);
    }
}

// The additive backward: rows with |lse| ≥ 128 take their max and sum from a pre-pass over
// the backward's own scores, as the flash backward does; the fused gradients (from the fused
// forward's out and lse) match the reference's at lse ≈ 1e4, 1e10 and 1e30, and the automatic
// backend runs that kernel (bit for bit the fused backend's). Every key row is the same here,
// so the additive scores tie exactly and only the bias decides.
TEST(HugeLogits, AdditiveBackwardHandlesSaturatedRows) {
  for (double S : kScales) {
    HugeCase c;
    c.fn = ScoreFn::additive, c.S = S, c.causal = true, c.offset = 61;
    SCOPED_TRACE(c.name());
    HugeInputs in = make_inputs(c);  // bias-driven
    {
      const std::vector<float> row = test::random_tensor({c.D}, 20).to_vector();
      std::vector<float> k;
      for (int64_t r = 0; r < c.B * c.Hkv * c.Nk; ++r) k.insert(k.end(), row.begin(), row.end());
      in.k = Tensor::from_vector(k, {c.B, c.Hkv, c.Nk, c.D});
    }
    const int64_t A = 4;
    in.ex.wq = test::random_tensor({A, c.D}, 21), in.ex.wk = test::random_tensor({A, c.D}, 22);
    in.ex.va = test::random_tensor({A}, 23);
    const AttentionOutput want = forward(in, AttentionBackend::reference, false);
    const AttentionOutput got = forward(in, AttentionBackend::fused, false);
    expect_close(got.out, want.out, kTol, "out");
    expect_lse_close(got.lse, want.lse);
    double max_lse = 0;
    for (float l : got.lse.to_vector())
      if (std::isfinite(l)) max_lse = std::max(max_lse, std::fabs(double(l)));
    ASSERT_GT(max_lse, 0.5 * S);  // saturated rows are there
    AttentionOptions o = in.opts;
    o.backend = AttentionBackend::reference;
    const AttentionGrads gw = attention_backward(in.q, in.k, in.v, in.ex, o, want, in.dout);
    o.backend = AttentionBackend::fused;
    const AttentionGrads gf = attention_backward(in.q, in.k, in.v, in.ex, o, got, in.dout);
    o.backend = AttentionBackend::automatic;
    const AttentionGrads ga = attention_backward(in.q, in.k, in.v, in.ex, o, got, in.dout);
    for (auto [name, f, a, w] : {std::tuple{"dq", &gf.dq, &ga.dq, &gw.dq}, {"dk", &gf.dk, &ga.dk, &gw.dk},
                                 {"dv", &gf.dv, &ga.dv, &gw.dv}, {"dwq", &gf.dwq, &ga.dwq, &gw.dwq},
                                 {"dwk", &gf.dwk, &ga.dwk, &gw.dwk}, {"dva", &gf.dva, &ga.dva, &gw.dva},
                                 {"dbias", &gf.dbias, &ga.dbias, &gw.dbias}}) {
      ASSERT_EQ(a->shape(), f->shape());
      EXPECT_EQ(a->to_vector(), f->to_vector()) << name;
    }
    expect_close(gf.dk, gw.dk, kTol, "dk");
    expect_close(gf.dv, gw.dv, kTol, "dv");
    expect_close(gf.dbias, gw.dbias, kTol, "dbias");
    // dq, dwq, dva and dwk are exactly 0 here: t_ija = tanh(Qp_ia + Kp_ja) and k_j are the
    // same for every key, so each is a multiple of Σ_j dS_ij = 0. Both sides are rounding residue, compared
    // against the size of the terms summed, from the reference's dS (= dbias, full shape):
    //   |dQp_ia| ≤ max|va| Σ_j |dS_ij|, so |dq| ≤ A max|wq| max|va| max_i Σ_j |dS_ij|;
    //   |dwq| ≤ max|va| max|q| Σ_ij |dS_ij|;  |dva| ≤ Σ_ij |dS_ij|;  |dwk| ≤ max|va| max|k| Σ_ij |dS_ij|.
    // (A P that did not sum to 1, as exp(s − lse) gave at 1e10, breaks Σ_j dS_ij = 0: O(1).)
    const std::vector<float> ds = gw.dbias.to_vector();
    double row_max = 0, total = 0;
    for (size_t r = 0; r < ds.size() / c.Nk; ++r) {
      double row = 0;
      for (int64_t j = 0; j < c.Nk; ++j) row += std::fabs(double(ds[r * c.Nk + j]));
      row_max = std::max(row_max, row), total += row;
    }
    ASSERT_GT(row_max, 0.1);
    const double va_max = max_abs(in.ex.va);
    const double bounds[] = {kTol * A * max_abs(in.ex.wq) * va_max * row_max,
                             kTol * va_max * max_abs(in.q) * total, kTol * total,
                             kTol * va_max * max_abs(in.k) * total};
    const Tensor* zeros[][2] = {{&gf.dq, &gw.dq}, {&gf.dwq, &gw.dwq}, {&gf.dva, &gw.dva}, {&gf.dwk, &gw.dwk}};
    for (int t = 0; t < 4; ++t) {
      EXPECT_LE(max_abs(*zeros[t][1]), bounds[t]) << "reference " << t;
      EXPECT_LE(max_abs(*zeros[t][0]), bounds[t]) << "fused " << t;
    }
  }
}

// bf16 inputs on the fused bf16 forward (the values here are exact in bf16) against the
// reference on the same values.
TEST(HugeLogits, Bf16Forward) {
  for (double S : kScales)
    for (Source src : {Source::bias, Source::dot}) {
      HugeCase c;
      c.S = S, c.source = src, c.causal = true, c.offset = 61;
      SCOPED_TRACE(c.name());
      HugeInputs in = make_inputs(c);
      in.q = in.q.to(DType::bf16), in.k = in.k.to(DType::bf16), in.v = in.v.to(DType::bf16);
      const AttentionOutput want = forward(in, AttentionBackend::reference, false);
      const AttentionOutput got = forward(in, AttentionBackend::automatic, false);
      expect_close(got.out, want.out, kTol, "out");
      // The bf16 tiles take q · scale · log2(e) rounded to bf16 (2^-9 relative), so the q·k
      // part of lse is off by up to 2^-8 of itself: |q·k| ≤ 16 in the bias cases, ≈ S when
      // q·k makes the logits. The ties, and so out, are exact all the same.
      if (src == Source::bias)
        expect_lse_close(got.lse, want.lse, 1e-6, 16.0 / 256);
      else
        expect_lse_close(got.lse, want.lse, 1.0 / 256);
    }
}

}  // namespace
}  // namespace attn
