// Attention under hostile numbers and sizes: huge logits, denormals, NaN / Inf with and
// without check_finite, rows with no visible key, empty and enormous shapes. Every case runs
// on the reference and the automatic (fused) backends.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "attn/attention/attention.h"
#include "attn/core/tensor.h"

// Enormous allocations must come back as attn::Error, which under ASan needs the allocator to
// return null instead of aborting (the default for an over-size request).
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

namespace attn {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
const AttentionBackend kBackends[] = {AttentionBackend::reference, AttentionBackend::automatic};

const char* name(AttentionBackend b) { return b == AttentionBackend::reference ? "reference" : "automatic"; }

Tensor filled(const Shape& s, float start, float step) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + step * static_cast<float>(i % 7);
  return t;
}

AttentionOutput forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionExtras& x,
                        AttentionOptions o, AttentionBackend b) {
  o.backend = b;
  return attention_forward(q, k, v, x, o);
}

// ±1e30 logits through the bias: the softmax must saturate to a one-hot (or an even split
// between tied maxima), with lse = the maximum logit, never NaN or Inf.
// Found by this test and fixed: the fused weights were exp(s − lse) with lse = m + log l, in
// which log l vanishes at |m| = 1e30 (tied keys got weight 1 each); now exp(s − m) / l.
// tests/attention/huge_logits_test.cpp covers out, weights and gradients at 1e4 .. 1e30.
TEST(HostileNumerics, HugeLogitsSaturateTheSoftmax) {
  const Tensor q = filled({1, 1, 3, 8}, 0.1f, 0.1f), k = filled({1, 1, 4, 8}, -0.2f, 0.1f);
  const Tensor v = filled({1, 1, 4, 8}, 1.f, 1.f);
  AttentionExtras x;
  x.bias = Tensor::full({3, 4}, -1e30f);
  x.bias.set({0, 2}, 1e30f);                             // row 0: key 2 wins
  x.bias.set({1, 0}, 1e30f), x.bias.set({1, 3}, 1e30f);  // row 1: tie between keys 0 and 3
  // row 2: every logit -1e30 (finite): still a proper softmax over the q·k scores
  AttentionOptions o;
  o.need_weights = true;
  for (AttentionBackend b : kBackends) {
    SCOPED_TRACE(name(b));
    const AttentionOutput r = forward(q, k, v, x, o, b);
    ASSERT_EQ(r.out.shape(), (Shape{1, 1, 3, 8}));
    for (int64_t d = 0; d < 8; ++d) {
      EXPECT_FLOAT_EQ(r.out.get({0, 0, 0, d}), v.get({0, 0, 2, d}));
      EXPECT_FLOAT_EQ(r.out.get({0, 0, 1, d}), 0.5f * (v.get({0, 0, 0, d}) + v.get({0, 0, 3, d})));
      EXPECT_TRUE(std::isfinite(r.out.get({0, 0, 2, d})));
    }
    EXPECT_FLOAT_EQ(r.lse.get({0, 0, 0}), 1e30f);
    EXPECT_FLOAT_EQ(r.lse.get({0, 0, 1}), 1e30f);  // 1e30 + log 2 rounds to 1e30
    EXPECT_FLOAT_EQ(r.lse.get({0, 0, 2}), -1e30f);
    EXPECT_FLOAT_EQ(r.weights.get({0, 0, 1, 0}), 0.5f);
    float row2 = 0;
    for (int64_t j = 0; j < 4; ++j) row2 += r.weights.get({0, 0, 2, j});
    EXPECT_NEAR(row2, 1.f, 1e-6f);
  }
}

// Huge scores from q·k itself (|q|, |k| ~ 1e15 → scores ~ ±1e30 in f32).
TEST(HostileNumerics, HugeDotProductsSaturateTheSoftmax) {
  Tensor q = Tensor::full({1, 1, 2, 1}, 1e15f), k = Tensor::full({1, 1, 3, 1}, -1e15f);
  q.set({0, 0, 1, 0}, -1e15f);
  k.set({0, 0, 1, 0}, 1e15f);
  const Tensor v = Tensor::from_vector({1.f, 2.f, 3.f}, {1, 1, 3, 1});
  AttentionOptions o;
  o.score = ScoreFn::dot;
  for (AttentionBackend b : kBackends) {
    SCOPED_TRACE(name(b));
    const AttentionOutput r = forward(q, k, v, {}, o, b);
    ASSERT_EQ(r.out.shape(), (Shape{1, 1, 2, 1}));
    EXPECT_FLOAT_EQ(r.out.get({0, 0, 0, 0}), 2.f);  // q0 > 0 picks the one positive key
    EXPECT_FLOAT_EQ(r.out.get({0, 0, 1, 0}), 2.f);  // q1 < 0: keys 0 and 2 tie → (1 + 3) / 2
    EXPECT_NEAR(r.lse.get({0, 0, 0}), 1e30f, 1e24f);
    EXPECT_NEAR(r.lse.get({0, 0, 1}), 1e30f, 1e24f);
  }
}

// Denormal inputs: scores underflow to 0 → uniform weights; out is the mean of v; gradients
// finite. The automatic path must match the reference.
TEST(HostileNumerics, DenormalsGiveFiniteResults) {
  const float tiny = 1e-40f;  // denormal in f32
  ASSERT_EQ(std::fpclassify(tiny), FP_SUBNORMAL);
  const Tensor q = Tensor::full({1, 2, 5, 16}, tiny), k = Tensor::full({1, 2, 7, 16}, -tiny);
  const Tensor v = filled({1, 2, 7, 16}, 0.5f, 0.25f);
  Tensor mean_v = Tensor::zeros({16});
  for (int64_t j = 0; j < 7; ++j)
    for (int64_t d = 0; d < 16; ++d) mean_v.set({d}, mean_v.get({d}) + v.get({0, 0, j, d}) / 7.f);
  AttentionOptions o;
  for (AttentionBackend b : kBackends) {
    SCOPED_TRACE(name(b));
    o.backend = b;
    const AttentionOutput r = attention_forward(q, k, v, {}, o);
    ASSERT_EQ(r.out.shape(), (Shape{1, 2, 5, 16}));
    for (int64_t d = 0; d < 16; ++d) EXPECT_NEAR(r.out.get({0, 1, 4, d}), mean_v.get({d}), 1e-5f);
    EXPECT_NEAR(r.lse.get({0, 0, 0}), std::log(7.f), 1e-5f);
    const AttentionGrads g = attention_backward(q, k, v, {}, o, r, Tensor::full({1, 2, 5, 16}, 1.f));
    for (const Tensor* t : {&g.dq, &g.dk, &g.dv})
      for (float x : t->to_vector()) ASSERT_TRUE(std::isfinite(x));
  }
}

// check_finite names the tensor and the first bad element, on every backend.
TEST(HostileNumerics, CheckFiniteNamesTheTensor) {
  const Tensor q0 = filled({1, 1, 4, 8}, 0.f, 0.1f), k0 = filled({1, 1, 5, 8}, 0.f, 0.1f);
  const Tensor v0 = filled({1, 1, 5, 8}, 0.f, 0.1f);
  AttentionOptions o;
  o.check_finite = true;
  for (AttentionBackend b : kBackends) {
    for (auto [which, value, text] : {std::tuple{"q", kNaN, "q holds NaN at [0, 0, 2, 3]"},
                                      std::tuple{"k", kInf, "k holds +inf at [0, 0, 2, 3]"},
                                      std::tuple{"v", -kInf, "v holds -inf at [0, 0, 2, 3]"}}) {
      SCOPED_TRACE(std::string(name(b)) + " " + which);
      Tensor q = q0.clone(), k = k0.clone(), v = v0.clone();
      Tensor& bad = std::string(which) == "q" ? q : std::string(which) == "k" ? k : v;
      bad.set({0, 0, 2, 3}, value);
      try {
        forward(q, k, v, {}, o, b);
        FAIL() << "no error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
      }
    }
  }
}

// Without check_finite (documented in attention.h): NaN / Inf are not looked for and the
// result is unspecified — the backends differ (the reference may skip a NaN score in its max,
// the fused kernel may spread a NaN value to rows that cannot see it through 0 * NaN). What is
// promised: no crash, no exception, outputs of the right shapes.
TEST(HostileNumerics, NonFiniteWithoutCheckIsUncheckedButSafe) {
  const Tensor q0 = filled({1, 1, 4, 8}, 0.f, 0.1f), k0 = filled({1, 1, 4, 8}, 0.f, 0.1f);
  const Tensor v0 = filled({1, 1, 4, 8}, 0.f, 0.1f);
  AttentionOptions o;
  o.causal = true;
  for (AttentionBackend b : kBackends) {
    for (const char* which : {"q", "k", "v"}) {
      for (float bad_value : {kNaN, kInf, -kInf}) {
        SCOPED_TRACE(std::string(name(b)) + " " + which + " " + std::to_string(bad_value));
        Tensor q = q0.clone(), k = k0.clone(), v = v0.clone();
        Tensor& bad = std::string(which) == "q" ? q : std::string(which) == "k" ? k : v;
        bad.set({0, 0, 2, 5}, bad_value);
        AttentionOutput r;
        ASSERT_NO_THROW(r = forward(q, k, v, {}, o, b));
        ASSERT_EQ(r.out.shape(), (Shape{1, 1, 4, 8}));
        ASSERT_EQ(r.lse.shape(), (Shape{1, 1, 4}));
        o.backend = b;
        AttentionGrads g;
        ASSERT_NO_THROW(g = attention_backward(q, k, v, {}, o, r, Tensor::full({1, 1, 4, 8}, 1.f)));
        EXPECT_EQ(g.dq.shape(), q.shape());
      }
    }
  }
}

// Rows with no visible key: out 0, lse -inf, weights 0, gradients 0 — on every backend, for
// each way of masking everything (key_lengths 0, causal with a negative offset, a window
// beyond the keys, a bias of -inf).
TEST(HostileNumerics, FullyMaskedRowsAreZeroNeverNaN) {
  const Tensor q = filled({2, 2, 3, 8}, 0.1f, 0.2f), k = filled({2, 2, 5, 8}, -0.3f, 0.1f);
  const Tensor v = filled({2, 2, 5, 8}, 1.f, 0.5f);
  struct Case {
    const char* what;
    AttentionOptions o;
    AttentionExtras x;
  };
  std::vector<Case> cases(4);
  cases[0].what = "key_lengths 0";
  cases[0].x.key_lengths = Tensor::from_vector_i32({0, 0}, {2});
  cases[1].what = "causal, offset -10";
  cases[1].o.causal = true, cases[1].o.query_offset = -10;
  cases[2].what = "window beyond the keys";
  cases[2].o.window = Window{0, 0}, cases[2].o.query_offset = 100;
  cases[3].what = "bias -inf";
  cases[3].x.bias = Tensor::full({3, 5}, -kInf);
  for (Case& c : cases) {
    c.o.need_weights = true;
    for (AttentionBackend b : {AttentionBackend::reference, AttentionBackend::automatic, AttentionBackend::fused}) {
      SCOPED_TRACE(std::string(c.what) + " " + (b == AttentionBackend::fused ? "fused" : name(b)));
      AttentionOptions o = c.o;
      o.backend = b;
      AttentionOutput r;
      try {
        r = attention_forward(q, k, v, c.x, o);
      } catch (const Error& e) {
        // The forced fused backend may refuse a request it does not support; never other errors.
        ASSERT_EQ(b, AttentionBackend::fused) << e.what();
        continue;
      }
      ASSERT_EQ(r.out.shape(), (Shape{2, 2, 3, 8}));
      for (float x : r.out.to_vector()) ASSERT_EQ(x, 0.f);
      for (float x : r.lse.to_vector()) ASSERT_EQ(x, -kInf);
      for (float x : r.weights.to_vector()) ASSERT_EQ(x, 0.f);
      const AttentionGrads g = attention_backward(q, k, v, c.x, o, r, Tensor::full({2, 2, 3, 8}, 1.f));
      for (const Tensor* t : {&g.dq, &g.dk, &g.dv}) {
        ASSERT_TRUE(t->defined());
        for (float x : t->to_vector()) ASSERT_EQ(x, 0.f);
      }
    }
  }
}

// N = 0 and D = 0 are rejected (attention.h: "every dimension ... at least 1"), on every
// backend, forward and backward alike.
TEST(HostileNumerics, EmptyShapesAreRejectedOnEveryBackend) {
  for (AttentionBackend b : kBackends) {
    for (Shape qs : {Shape{1, 1, 0, 4}, Shape{1, 1, 3, 0}, Shape{0, 3}, Shape{3, 0}}) {
      SCOPED_TRACE(std::string(name(b)) + " q " + shape_str(qs));
      const int64_t D = qs.back();
      AttentionOptions o;
      o.backend = b;
      const Tensor kv = Tensor::zeros(qs.size() == 4 ? Shape{1, 1, 2, D} : Shape{2, D});
      try {
        attention_forward(Tensor::zeros(qs), kv, kv, {}, o);
        FAIL() << "no error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("at least 1"), std::string::npos) << e.what();
      }
    }
  }
}

// Sizes whose bytes overflow int64 or exceed memory: a clear attn::Error, not a crash.
TEST(HostileNumerics, EnormousShapesThrowInsteadOfCrashing) {
  const int64_t big = int64_t{1} << 31;
  try {
    Tensor::empty({big, big, big});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  try {
    Tensor::empty({int64_t{1} << 42});  // 16 TiB: more than this machine has
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot allocate"), std::string::npos) << e.what();
  }
  // need_weights materialises [Nq, Nk]: with Nq = Nk = 2^21 that is 16 TiB.
  const int64_t n = int64_t{1} << 21;
  const Tensor q = Tensor::zeros({n, 1}), k = Tensor::zeros({n, 1});
  for (AttentionBackend b : kBackends) {
    SCOPED_TRACE(name(b));
    AttentionOptions o;
    o.need_weights = true, o.backend = b;
    try {
      attention_forward(q, k, k, {}, o);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot allocate"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace attn
