// The attention op: gradient checks in f64 (reference kernel), f32 path (public API, fused
// kernel where it applies) against f64, and against the same computation from primitive ops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::leaf;

struct Case {
  const char* name;
  ScoreFn score;
  int64_t B, Hq, Hkv, Nq, Nk, D, Dk, Dv, A;
  bool causal, lengths, bias, window;
  double dropout;
};

const Case kCases[] = {
    {"scaled_dot_gqa_causal_lengths_bias", ScoreFn::scaled_dot, 2, 4, 2, 3, 4, 3, 3, 2, 0, true, true, true, false, 0},
    {"dot_window", ScoreFn::dot, 1, 2, 2, 4, 4, 3, 3, 3, 0, false, false, false, true, 0},
    {"general_bias2d", ScoreFn::general, 2, 1, 1, 3, 5, 2, 3, 2, 0, false, true, true, false, 0},
    {"additive", ScoreFn::additive, 2, 2, 1, 2, 3, 3, 2, 2, 4, false, true, false, false, 0},
    {"cosine", ScoreFn::cosine, 1, 2, 2, 3, 3, 4, 4, 2, 0, true, false, false, false, 0},
    {"scaled_dot_dropout", ScoreFn::scaled_dot, 1, 2, 2, 3, 4, 2, 2, 2, 0, false, false, false, false, 0.3},
};

struct Built {
  Var q, k, v;
  AttentionInputs in;
  AttentionOptions opts;
  std::vector<Var> leaves;
};

Built build(const Case& c, Rng& rng, DType dt) {
  auto mk = [&](const Shape& s) { return Var(random_tensor(s, rng, -1, 1, dt), true); };
  Built b;
  b.q = mk({c.B, c.Hq, c.Nq, c.D});
  b.k = mk({c.B, c.Hkv, c.Nk, c.Dk});
  b.v = mk({c.B, c.Hkv, c.Nk, c.Dv});
  b.leaves = {b.q, b.k, b.v};
  b.opts.score = c.score;
  b.opts.causal = c.causal;
  b.opts.dropout = c.dropout;
  b.opts.seed = 99;
  if (c.score == ScoreFn::cosine) b.opts.temperature = 0.5;
  if (c.window) b.opts.window = Window{1, 1};
  if (c.score == ScoreFn::general) b.leaves.push_back(b.in.w = mk({c.D, c.Dk}));
  if (c.score == ScoreFn::additive) {
    b.leaves.push_back(b.in.wq = mk({c.A, c.D}));
    b.leaves.push_back(b.in.wk = mk({c.A, c.Dk}));
    b.leaves.push_back(b.in.va = mk({c.A}));
  }
  if (c.bias) b.leaves.push_back(b.in.bias = c.score == ScoreFn::general ? mk({c.Nq, c.Nk}) : mk({c.B, 1, c.Nq, c.Nk}));
  if (c.lengths) {
    std::vector<int32_t> len(static_cast<size_t>(c.B));
    for (int64_t i = 0; i < c.B; ++i) len[static_cast<size_t>(i)] = static_cast<int32_t>(c.Nk - i);
    b.in.key_lengths = Tensor::from_vector_i32(len, {c.B});
  }
  return b;
}

TEST(AttentionOp, GradcheckEveryScoreFunctionAndMask) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    Rng rng(31);
    Built b = build(c, rng, DType::f64);
    Var out = attention(b.q, b.k, b.v, b.in, b.opts).out;
    ASSERT_EQ(out.shape(), (Shape{c.B, c.Hq, c.Nq, c.Dv}));
    expect_gradcheck([&] { return attention(b.q, b.k, b.v, b.in, b.opts).out; }, b.leaves);
  }
}

TEST(AttentionOp, F32PathMatchesF64ValuesAndGradients) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    Rng r1(32), r2(32);
    Built a = build(c, r1, DType::f32), b = build(c, r2, DType::f64);
    Rng rs(5);
    Tensor seed = random_tensor({c.B, c.Hq, c.Nq, c.Dv}, rs, -1, 1, DType::f32);
    Var ya = attention(a.q, a.k, a.v, a.in, a.opts).out, yb = attention(b.q, b.k, b.v, b.in, b.opts).out;
    ya.backward(seed);
    yb.backward(seed.to(DType::f64));
    expect_close(ya.value(), yb.value(), 2e-5, 2e-5, "out");
    for (size_t i = 0; i < a.leaves.size(); ++i)
      expect_close(a.leaves[i].grad(), b.leaves[i].grad(), 5e-5, 5e-5, "grad " + std::to_string(i));
  }
}

// scaled_dot with causal mask, key lengths and GQA from primitives:
//   softmax(q kᵀ / sqrt(D) + mask) v, kv head h / (Hq / Hkv).
TEST(AttentionOp, FusedEqualsComposed) {
  Rng rng(33);
  const int64_t B = 2, Hq = 4, Hkv = 2, N = 5, D = 4;
  Tensor qt = random_tensor({B, Hq, N, D}, rng, -1, 1, DType::f32), kt = random_tensor({B, Hkv, N, D}, rng, -1, 1, DType::f32),
         vt = random_tensor({B, Hkv, N, D}, rng, -1, 1, DType::f32), seed = random_tensor({B, Hq, N, D}, rng, -1, 1, DType::f32);
  Tensor len = Tensor::from_vector_i32({5, 3}, {2});
  Var q1(qt.clone(), true), k1(kt.clone(), true), v1(vt.clone(), true);
  AttentionInputs in;
  in.key_lengths = len;
  AttentionOptions o;
  o.causal = true;
  o.need_weights = true;
  AttentionResult r = attention(q1, k1, v1, in, o);
  r.out.backward(seed);
  ASSERT_EQ(r.weights.shape(), (Shape{B, Hq, N, N}));

  Var q2(qt.clone(), true), k2(kt.clone(), true), v2(vt.clone(), true);
  Tensor mask = Tensor::zeros({B, 1, N, N});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j)
        if (j > i || j >= len.get({b})) mask.set({b, 0, i, j}, -std::numeric_limits<float>::infinity());
  // Grouped heads: query heads 2g and 2g+1 read kv head g.
  Var qg = reshape(q2, {B * Hkv, 2 * N, D});
  Var s = bmm(qg, reshape(k2, {B * Hkv, N, D}), false, true) * (1.0 / std::sqrt(double(D)));
  Var p = softmax(add(reshape(s, {B, Hq, N, N}), Var(mask)), -1);
  Var out = reshape(bmm(reshape(p, {B * Hkv, 2 * N, N}), reshape(v2, {B * Hkv, N, D})), {B, Hq, N, D});
  out.backward(seed);
  expect_close(r.out.value(), out.value(), 1e-5, 1e-5, "out");
  expect_close(r.weights, p.value(), 1e-5, 1e-5, "weights");
  expect_close(q1.grad(), q2.grad(), 1e-5, 1e-5, "dq");
  expect_close(k1.grad(), k2.grad(), 1e-5, 1e-5, "dk");
  expect_close(v1.grad(), v2.grad(), 1e-5, 1e-5, "dv");
}

// The op's f32 gradient for the general score comes from the fused backward: with backend
// automatic it equals backend fused bit for bit (q, k, v and W), and differs from the
// reference backend's bits; both are checked against f64 above (F32PathMatchesF64...).
TEST(AttentionOp, GeneralGradientTakesTheFusedBackward) {
  const Case c = kCases[2];
  ASSERT_EQ(c.score, ScoreFn::general);
  std::vector<std::vector<Tensor>> grads;
  for (AttentionBackend be : {AttentionBackend::automatic, AttentionBackend::fused, AttentionBackend::reference}) {
    Rng r(40), rs(41);
    Built b = build(c, r, DType::f32);
    b.opts.backend = be;
    Var y = attention(b.q, b.k, b.v, b.in, b.opts).out;
    y.backward(random_tensor(y.shape(), rs, -1, 1, DType::f32));
    grads.emplace_back();
    for (const Var& l : b.leaves) grads.back().push_back(l.grad());
  }
  for (size_t i = 0; i < 4; ++i) {  // q, k, v, w
    SCOPED_TRACE(i);
    ASSERT_EQ(grads[0][i].shape(), grads[1][i].shape());
    EXPECT_EQ(grads[0][i].to_vector(), grads[1][i].to_vector());
    EXPECT_NE(grads[0][i].to_vector(), grads[2][i].to_vector());
  }
}

TEST(AttentionOp, LowerRanksAndErrors) {
  Rng rng(34);
  Var q = leaf({3, 4}, rng), k = leaf({5, 4}, rng), v = leaf({5, 2}, rng);
  expect_gradcheck([&] { return attention(q, k, v, {}, {}).out; }, {q, k, v});
  EXPECT_EQ(attention(q, k, v, {}, {}).out.shape(), (Shape{3, 2}));
  Var q32(Tensor::zeros({3, 4}), true), k32(Tensor::zeros({5, 3}), true), v32(Tensor::zeros({5, 2}), true);
  EXPECT_THROW(attention(q32, k32, v32, {}, {}), Error);
}

}  // namespace
}  // namespace attn::ag
