// attention_backward (the public API) against the reference's double overloads on the same
// values: shapes of every gradient, ranks, strides, bf16, and dbias summed to the shape of
// the bias given. The double reference itself is checked by finite differences in
// gradient_test.cpp.
#include <gtest/gtest.h>

#include <tuple>

#include "attention/problem64.h"
#include "attn/core/threading.h"

namespace attn {
namespace {

using test::analytic;
using test::Analytic;
using test::close_to;
using test::Problem64;
using test::random_tensor;
using test::to_double;

struct ApiCase {
  ScoreFn fn = ScoreFn::scaled_dot;
  int64_t B = 2, Hq = 4, Hkv = 2, Nq = 3, Nk = 5, D = 3, Dk = 2, Dv = 2, A = 3;
  int rank = 4;
  Shape bias_shape;
  bool causal = false;
  int64_t offset = 0;
  std::vector<int32_t> key_lengths;
  double dropout = 0;
  uint64_t seed = 0;
};

Shape cut(const Shape& s4, int rank) { return Shape(s4.end() - rank, s4.end()); }

struct ApiRun {
  Tensor q, k, v, dout;
  AttentionExtras ex;
  AttentionOptions opts;
  AttentionOutput fwd;
  AttentionGrads g;
};

ApiRun make_inputs(const ApiCase& c) {
  ApiRun r;
  const bool own_dk = c.fn == ScoreFn::general || c.fn == ScoreFn::additive;
  const int64_t Dk = own_dk ? c.Dk : c.D;
  r.q = random_tensor(cut({c.B, c.Hq, c.Nq, c.D}, c.rank), 1);
  r.k = random_tensor(cut({c.B, c.Hkv, c.Nk, Dk}, c.rank), 2);
  r.v = random_tensor(cut({c.B, c.Hkv, c.Nk, c.Dv}, c.rank), 3);
  r.dout = random_tensor(cut({c.B, c.Hq, c.Nq, c.Dv}, c.rank), 4);
  if (c.fn == ScoreFn::general) r.ex.w = random_tensor({c.D, Dk}, 5);
  if (c.fn == ScoreFn::additive) {
    r.ex.wq = random_tensor({c.A, c.D}, 6);
    r.ex.wk = random_tensor({c.A, Dk}, 7);
    r.ex.va = random_tensor({c.A}, 8);
  }
  if (!c.bias_shape.empty()) r.ex.bias = random_tensor(c.bias_shape, 9, -1, 1);
  if (!c.key_lengths.empty()) r.ex.key_lengths = Tensor::from_vector_i32(c.key_lengths, {c.B});
  r.opts.score = c.fn;
  r.opts.temperature = c.fn == ScoreFn::cosine ? 0.5 : 1.0;
  r.opts.causal = c.causal;
  r.opts.query_offset = c.offset;
  r.opts.dropout = c.dropout;
  r.opts.seed = c.seed;
  return r;
}

void run_api(ApiRun& r) {
  r.fwd = attention_forward(r.q, r.k, r.v, r.ex, r.opts);
  r.g = attention_backward(r.q, r.k, r.v, r.ex, r.opts, r.fwd, r.dout);
}

// The same problem in double, from the (f32) values of the API run.
Problem64 as_double(const ApiCase& c, const ApiRun& r) {
  const int64_t Dk = r.k.size(-1);
  Problem64 pr(c.fn, c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.D, Dk, c.Dv, c.A, 0);
  pr.q = to_double(r.q), pr.k = to_double(r.k), pr.v = to_double(r.v), pr.dout = to_double(r.dout);
  pr.p.scale = c.fn == ScoreFn::scaled_dot ? 1.0 / std::sqrt(static_cast<double>(c.D)) : 1.0;
  pr.s.temperature = r.opts.temperature;
  if (r.ex.w.defined()) pr.w = to_double(r.ex.w);
  if (r.ex.wq.defined()) pr.wq = to_double(r.ex.wq), pr.wk = to_double(r.ex.wk), pr.va = to_double(r.ex.va);
  pr.p.causal = c.causal, pr.p.query_offset = c.offset;
  pr.p.dropout = c.dropout, pr.p.seed = c.seed;
  pr.key_lengths = c.key_lengths;
  if (r.ex.bias.defined()) {
    pr.add_bias(0, 0);
    const Tensor& b = r.ex.bias;
    for (int64_t bb = 0; bb < c.B; ++bb)
      for (int64_t h = 0; h < c.Hq; ++h)
        for (int64_t i = 0; i < c.Nq; ++i)
          for (int64_t j = 0; j < c.Nk; ++j)
            pr.bias[((bb * c.Hq + h) * c.Nq + i) * c.Nk + j] =
                b.dim() == 2 ? b.get({i, j}) : b.get({b.size(0) == 1 ? 0 : bb, b.size(1) == 1 ? 0 : h, i, j});
  }
  return pr;
}

// Sum of a full [B, Hq, Nq, Nk] gradient over the broadcast dims of `shape`, by hand.
std::vector<double> sum_to(const std::vector<double>& full, const ApiCase& c, const Shape& shape) {
  std::vector<double> out(static_cast<size_t>(shape_numel(shape)), 0.0);
  const bool rank2 = shape.size() == 2;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; ++i)
        for (int64_t j = 0; j < c.Nk; ++j) {
          const int64_t bb = rank2 || shape[0] == 1 ? 0 : b, hh = rank2 || shape[1] == 1 ? 0 : h;
          const int64_t hn = rank2 ? 1 : shape[1];
          out[((bb * hn + hh) * c.Nq + i) * c.Nk + j] += full[((b * c.Hq + h) * c.Nq + i) * c.Nk + j];
        }
  return out;
}

constexpr double kAtol = 2e-6, kRtol = 2e-6;

void check_api_against_double(const ApiCase& c, ApiRun& r, const std::string& what) {
  SCOPED_TRACE(what);
  run_api(r);
  Problem64 pr = as_double(c, r);
  Analytic a = analytic(pr);
  EXPECT_TRUE(close_to(r.g.dq, r.q.shape(), a.dq, kAtol, kRtol)) << "dq";
  EXPECT_TRUE(close_to(r.g.dk, r.k.shape(), a.dk, kAtol, kRtol)) << "dk";
  EXPECT_TRUE(close_to(r.g.dv, r.v.shape(), a.dv, kAtol, kRtol)) << "dv";
  EXPECT_EQ(r.g.dw.defined(), c.fn == ScoreFn::general);
  if (c.fn == ScoreFn::general) {
    EXPECT_TRUE(close_to(r.g.dw, r.ex.w.shape(), a.dw, kAtol, kRtol)) << "dw";
  }
  EXPECT_EQ(r.g.dwq.defined(), c.fn == ScoreFn::additive);
  if (c.fn == ScoreFn::additive) {
    EXPECT_TRUE(close_to(r.g.dwq, r.ex.wq.shape(), a.dwq, kAtol, kRtol)) << "dwq";
    EXPECT_TRUE(close_to(r.g.dwk, r.ex.wk.shape(), a.dwk, kAtol, kRtol)) << "dwk";
    EXPECT_TRUE(close_to(r.g.dva, r.ex.va.shape(), a.dva, kAtol, kRtol)) << "dva";
  }
  EXPECT_EQ(r.g.dbias.defined(), r.ex.bias.defined());
  if (r.ex.bias.defined()) {
    EXPECT_TRUE(close_to(r.g.dbias, r.ex.bias.shape(), sum_to(a.dbias, c, r.ex.bias.shape()), kAtol, kRtol))
        << "dbias";
  }
  if (c.fn == ScoreFn::cosine) {
    // The fused cosine backward sums dT = −(1/T) Σ q̂·dq̂ from f32 dq̂: the f32 bound above.
    EXPECT_NEAR(r.g.dtemperature, a.dtemperature, kAtol + kRtol * std::fabs(a.dtemperature));
    EXPECT_NE(r.g.dtemperature, 0.0);
  } else {
    EXPECT_EQ(r.g.dtemperature, 0.0);
  }
}

const ScoreFn kAllFns[] = {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine, ScoreFn::general,
                           ScoreFn::additive};

TEST(AttentionBackwardApi, EveryScoreFnWithMasksMatchesDoubleReference) {
  for (ScoreFn fn : kAllFns) {
    ApiCase c;
    c.fn = fn, c.causal = true, c.offset = 1, c.key_lengths = {4, 0};
    c.bias_shape = {c.B, c.Hq, c.Nq, c.Nk};
    ApiRun r = make_inputs(c);
    check_api_against_double(c, r, score_fn_name(fn));
    c.dropout = 0.25, c.seed = 5, c.key_lengths.clear(), c.bias_shape.clear();
    ApiRun r2 = make_inputs(c);
    check_api_against_double(c, r2, std::string(score_fn_name(fn)) + " dropout");
  }
}

TEST(AttentionBackwardApi, DbiasIsSummedToTheBiasShape) {
  ApiCase c;
  for (Shape bs : {Shape{3, 5}, Shape{1, 4, 3, 5}, Shape{2, 1, 3, 5}, Shape{1, 1, 3, 5}, Shape{2, 4, 3, 5}}) {
    c.bias_shape = bs;
    ApiRun r = make_inputs(c);
    check_api_against_double(c, r, "bias " + shape_str(bs));
    ASSERT_EQ(r.g.dbias.shape(), bs);
  }
}

TEST(AttentionBackwardApi, Rank2And3GradientsHaveInputShapes) {
  for (ScoreFn fn : kAllFns) {
    ApiCase c;
    c.fn = fn, c.rank = 3, c.B = 1, c.Hq = 2, c.Hkv = 1, c.causal = true;
    ApiRun r = make_inputs(c);
    check_api_against_double(c, r, std::string(score_fn_name(fn)) + " rank 3");
    ASSERT_EQ(r.g.dq.dim(), 3);
    c.rank = 2, c.Hq = 1, c.bias_shape = {c.Nq, c.Nk};
    ApiRun r2 = make_inputs(c);
    check_api_against_double(c, r2, std::string(score_fn_name(fn)) + " rank 2");
    ASSERT_EQ(r2.g.dq.shape(), (Shape{c.Nq, c.D}));
    ASSERT_EQ(r2.fwd.lse.shape(), (Shape{c.Nq}));
  }
}

TEST(AttentionBackwardApi, StridedAndBf16InputsGiveTheSameGradients) {
  ApiCase c;
  c.fn = ScoreFn::general, c.causal = true, c.offset = 2;
  ApiRun r = make_inputs(c);
  run_api(r);
  // Non-contiguous views of the same values: identical arithmetic, identical gradients.
  ApiRun s = r;
  s.q = r.q.transpose(1, 2).contiguous().transpose(1, 2);
  s.v = r.v.transpose(2, 3).contiguous().transpose(2, 3);
  s.dout = r.dout.transpose(0, 1).contiguous().transpose(0, 1);
  ASSERT_FALSE(s.q.is_contiguous());
  run_api(s);
  for (auto [got, want] : {std::pair{s.g.dq, r.g.dq}, {s.g.dk, r.g.dk}, {s.g.dv, r.g.dv}, {s.g.dw, r.g.dw}}) {
    std::vector<float> w = want.to_vector();
    EXPECT_TRUE(close_to(got, want.shape(), std::vector<double>(w.begin(), w.end()), 0, 0));
  }
  // bf16 inputs: gradients in f32 with the input shapes, equal to f32 inputs holding the
  // bf16-rounded values.
  ApiRun h = r, hr = r;
  h.q = r.q.to(DType::bf16), h.k = r.k.to(DType::bf16), h.v = r.v.to(DType::bf16);
  h.dout = r.dout.to(DType::bf16);
  hr.q = h.q.to(DType::f32), hr.k = h.k.to(DType::f32), hr.v = h.v.to(DType::f32);
  hr.dout = h.dout.to(DType::f32);
  run_api(h);
  run_api(hr);
  ASSERT_EQ(h.g.dq.dtype(), DType::f32);
  for (auto [got, want] : {std::pair{h.g.dq, hr.g.dq}, {h.g.dk, hr.g.dk}, {h.g.dv, hr.g.dv}}) {
    std::vector<float> w = want.to_vector();
    EXPECT_TRUE(close_to(got, want.shape(), std::vector<double>(w.begin(), w.end()), 0, 0));
  }
}

// The general backward runs fused (q' = q W, the flash backward, two GEMMs): backend fused
// accepts it, automatic gives the fused gradients bit for bit, and those are not the
// reference's bits (so automatic did not fall back), while both match the double reference.
// Causal with an offset, key lengths, a bias, GQA, Dk ≠ D, 1 and 2 threads.
TEST(AttentionBackwardApi, GeneralRunsFusedUnderAutomatic) {
  ApiCase c;
  c.fn = ScoreFn::general, c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 37, c.Nk = 70, c.D = 24, c.Dk = 40,
  c.Dv = 16, c.causal = true, c.offset = 30, c.key_lengths = {70, 45};
  c.bias_shape = {c.B, 1, c.Nq, c.Nk};
  for (int threads : {1, 2}) {
    SCOPED_TRACE(threads);
    set_num_threads(threads);
    ApiRun r = make_inputs(c);
    const double a = std::sqrt(3.0 / (c.D * std::sqrt(double(c.Dk))));  // O(1) logits
    r.ex.w = random_tensor({c.D, c.Dk}, 5, -a, a);
    ApiRun fused = r, reference = r;
    fused.opts.backend = AttentionBackend::fused;
    reference.opts.backend = AttentionBackend::reference;
    ASSERT_NO_THROW(run_api(fused));
    run_api(reference);
    check_api_against_double(c, r, "automatic");  // runs the automatic backend
    set_num_threads(1);
    for (auto [a, f, ref] : {std::tuple{r.g.dq, fused.g.dq, reference.g.dq}, {r.g.dk, fused.g.dk, reference.g.dk},
                             {r.g.dv, fused.g.dv, reference.g.dv}, {r.g.dw, fused.g.dw, reference.g.dw}}) {
      ASSERT_EQ(a.shape(), f.shape());
      EXPECT_EQ(a.to_vector(), f.to_vector());
      EXPECT_NE(a.to_vector(), ref.to_vector());
    }
  }
}

}  // namespace
}  // namespace attn
