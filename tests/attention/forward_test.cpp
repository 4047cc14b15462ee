// attention_forward (reference backend) against the direct double formula in
// attention_test_util.h: every score function, every mask, GQA, ranks, strides, bf16.
#include <gtest/gtest.h>

#include <optional>

#include "attention/attention_test_util.h"

namespace attn {
namespace {

using test::close_to;
using test::direct_attention;
using test::DirectInputs;
using test::random_tensor;
using test::to_double;

const ScoreFn kAllFns[] = {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine, ScoreFn::general,
                           ScoreFn::additive};

// One forward call, described by sizes, score function and masks.
struct Case {
  ScoreFn fn = ScoreFn::scaled_dot;
  int64_t B = 2, Hq = 4, Hkv = 2, Nq = 5, Nk = 7, D = 3, Dk = 3, Dv = 4, A = 3;
  int rank = 4;
  std::optional<double> scale;
  double temperature = 1.0;
  bool causal = false;
  int64_t offset = 0;
  std::optional<Window> window;
  std::vector<int32_t> key_lengths;
  Shape bias_shape;         // empty: no bias
  int bias_neg_inf_every = 0;  // when > 0, every n-th bias element is -inf
  double dropout = 0;
  uint64_t seed = 0;
  std::string name() const {
    std::ostringstream os;
    os << score_fn_name(fn) << " B" << B << " Hq" << Hq << " Hkv" << Hkv << " Nq" << Nq << " Nk"
       << Nk << " D" << D << " Dk" << Dk << " Dv" << Dv << " rank" << rank
       << (causal ? " causal" : "") << " offset" << offset;
    if (window) os << " window(" << window->left << "," << window->right << ")";
    if (!key_lengths.empty()) os << " key_lengths";
    if (!bias_shape.empty()) os << " bias" << shape_str(bias_shape);
    if (dropout > 0) os << " dropout" << dropout;
    return os.str();
  }
};

Shape cut(const Shape& s4, int rank) { return Shape(s4.end() - rank, s4.end()); }

struct Built {
  Tensor q, k, v;
  AttentionExtras ex;
  AttentionOptions opts;
  DirectInputs in;
};

// Random inputs for a case, plus the matching inputs of the direct formula.
Built build(const Case& c, uint64_t seed = 1) {
  Built r;
  const int64_t Dk = (c.fn == ScoreFn::general || c.fn == ScoreFn::additive) ? c.Dk : c.D;
  r.q = random_tensor(cut({c.B, c.Hq, c.Nq, c.D}, c.rank), seed);
  r.k = random_tensor(cut({c.B, c.Hkv, c.Nk, Dk}, c.rank), seed + 1);
  r.v = random_tensor(cut({c.B, c.Hkv, c.Nk, c.Dv}, c.rank), seed + 2);
  r.opts.score = c.fn;
  r.opts.scale = c.scale;
  r.opts.temperature = c.temperature;
  r.opts.causal = c.causal;
  r.opts.query_offset = c.offset;
  r.opts.window = c.window;
  r.opts.dropout = c.dropout;
  r.opts.seed = c.seed;
  r.opts.need_weights = true;
  r.opts.backend = AttentionBackend::reference;
  DirectInputs& in = r.in;
  in.B = c.B, in.Hq = c.Hq, in.Hkv = c.Hkv, in.Nq = c.Nq, in.Nk = c.Nk, in.D = c.D, in.Dk = Dk;
  in.Dv = c.Dv, in.A = c.A;
  in.fn = c.fn;
  in.scale = c.scale.value_or(1.0 / std::sqrt(static_cast<double>(c.D)));
  in.temperature = c.temperature;
  in.causal = c.causal;
  in.offset = c.offset;
  if (c.window) in.window = true, in.left = c.window->left, in.right = c.window->right;
  in.dropout = c.dropout;
  in.seed = c.seed;
  if (c.fn == ScoreFn::general) r.ex.w = random_tensor({c.D, Dk}, seed + 3);
  if (c.fn == ScoreFn::additive) {
    r.ex.wq = random_tensor({c.A, c.D}, seed + 4);
    r.ex.wk = random_tensor({c.A, Dk}, seed + 5);
    r.ex.va = random_tensor({c.A}, seed + 6);
  }
  if (!c.key_lengths.empty()) {
    r.ex.key_lengths = Tensor::from_vector_i32(c.key_lengths, {c.B});
    in.key_lengths.assign(c.key_lengths.begin(), c.key_lengths.end());
  }
  if (!c.bias_shape.empty()) {
    Tensor bias = random_tensor(c.bias_shape, seed + 7, -2.0, 2.0);
    if (c.bias_neg_inf_every > 0) {
      std::vector<float> bv = bias.to_vector();
      for (size_t n = 0; n < bv.size(); n += static_cast<size_t>(c.bias_neg_inf_every))
        bv[n] = -std::numeric_limits<float>::infinity();
      bias = Tensor::from_vector(bv, c.bias_shape);
    }
    r.ex.bias = bias;
    // Expand by hand: [Nq, Nk] or [B|1, Hq|1, Nq, Nk] -> [B, Hq, Nq, Nk].
    in.bias.resize(c.B * c.Hq * c.Nq * c.Nk);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.Hq; ++h)
        for (int64_t i = 0; i < c.Nq; ++i)
          for (int64_t j = 0; j < c.Nk; ++j)
            in.bias[((b * c.Hq + h) * c.Nq + i) * c.Nk + j] =
                bias.dim() == 2 ? bias.get({i, j})
                                : bias.get({bias.size(0) == 1 ? 0 : b, bias.size(1) == 1 ? 0 : h, i, j});
  }
  in.q = to_double(r.q);
  in.k = to_double(r.k);
  in.v = to_double(r.v);
  if (r.ex.w.defined()) in.w = to_double(r.ex.w);
  if (r.ex.wq.defined()) in.wq = to_double(r.ex.wq), in.wk = to_double(r.ex.wk), in.va = to_double(r.ex.va);
  return r;
}

// The library in f32 against the formula in double: one rounding of each output.
constexpr double kAtol = 2e-6, kRtol = 2e-6;

void check_against_direct(const Case& c, const Built& bt) {
  SCOPED_TRACE(c.name());
  AttentionOutput o = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
  test::DirectResult want = direct_attention(bt.in);
  EXPECT_TRUE(close_to(o.out, cut({c.B, c.Hq, c.Nq, c.Dv}, c.rank), want.out, kAtol, kRtol)) << "out";
  EXPECT_TRUE(close_to(o.lse, cut({c.B, c.Hq, c.Nq}, c.rank - 1), want.lse, kAtol, kRtol)) << "lse";
  EXPECT_TRUE(close_to(o.weights, cut({c.B, c.Hq, c.Nq, c.Nk}, c.rank), want.weights, kAtol, kRtol))
      << "weights";
}

void check_case(const Case& c) { check_against_direct(c, build(c)); }

// The mask configurations swept for every score function, for a given Nq, Nk.
std::vector<Case> mask_cases(Case base) {
  std::vector<Case> cs;
  auto add = [&](auto&& edit) {
    Case c = base;
    edit(c);
    cs.push_back(c);
  };
  const int64_t Nq = base.Nq, Nk = base.Nk, B = base.B, Hq = base.Hq;
  add([](Case&) {});
  add([](Case& c) { c.causal = true; });
  add([&](Case& c) { c.causal = true, c.offset = Nk - Nq; });
  add([](Case& c) { c.causal = true, c.offset = -2; });  // the first rows see nothing
  add([](Case& c) { c.window = Window{1, 1}; });
  add([&](Case& c) { c.window = Window{2, 0}, c.causal = true, c.offset = Nk - Nq; });
  add([](Case& c) { c.window = Window{0, 3}, c.offset = 3; });
  add([&](Case& c) { c.key_lengths = {3, 0}; });  // batch 1: every row fully masked
  add([&](Case& c) { c.key_lengths = {static_cast<int32_t>(Nk), 1}; });
  add([&](Case& c) { c.bias_shape = {Nq, Nk}; });
  add([&](Case& c) { c.bias_shape = {B, Hq, Nq, Nk}; });
  add([&](Case& c) { c.bias_shape = {1, Hq, Nq, Nk}; });
  add([&](Case& c) { c.bias_shape = {B, 1, Nq, Nk}; });
  add([&](Case& c) { c.bias_shape = {1, 1, Nq, Nk}; });
  add([&](Case& c) { c.bias_shape = {B, Hq, Nq, Nk}, c.bias_neg_inf_every = 3; });
  add([&](Case& c) { c.bias_shape = {Nq, Nk}, c.bias_neg_inf_every = 1; });  // all -inf
  add([](Case& c) { c.dropout = 0.3, c.seed = 42, c.causal = true; });
  add([&](Case& c) {
    c.causal = true, c.offset = Nk - Nq, c.window = Window{3, 0}, c.key_lengths = {5, 2};
    c.bias_shape = {B, 1, Nq, Nk}, c.bias_neg_inf_every = 4;
  });
  return cs;
}

TEST(AttentionForward, EveryScoreFnEveryMaskMatchesDirectFormula) {
  for (ScoreFn fn : kAllFns)
    for (auto [nq, nk] : {std::pair<int64_t, int64_t>{5, 7}, {7, 5}, {6, 6}}) {
      Case base;
      base.fn = fn, base.Nq = nq, base.Nk = nk;
      base.Dk = 2;  // differs from D for general / additive
      for (const Case& c : mask_cases(base)) check_case(c);
    }
}

// One suite per score function keeps each test short under the sanitizers.
class AttentionForwardSizes : public ::testing::TestWithParam<ScoreFn> {};

TEST_P(AttentionForwardSizes, MatchDirectFormula) {
  const ScoreFn fn = GetParam();
  for (int64_t n : {1, 7, 65})
    for (int64_t d : {1, 3, 64, 80}) {
      Case c;
      c.fn = fn, c.B = 1, c.Hq = 2, c.Hkv = 1, c.Nq = n, c.Nk = n, c.D = d, c.Dk = d == 1 ? 2 : d - 1;
      c.Dv = d, c.A = 4;
      c.causal = true;
      check_case(c);
      if (n == 65 && d > 3) continue;  // Nq != Nk with padding: the small sizes suffice
      c.causal = false, c.Nk = n + 3, c.key_lengths = {static_cast<int32_t>(n)};
      check_case(c);
    }
}

INSTANTIATE_TEST_SUITE_P(AllScoreFns, AttentionForwardSizes, ::testing::ValuesIn(kAllFns),
                         [](const ::testing::TestParamInfo<ScoreFn>& info) {
                           return std::string(score_fn_name(info.param));
                         });

TEST(AttentionForward, GroupedQueryHeads) {
  for (ScoreFn fn : kAllFns)
    for (int64_t hkv : {1, 2, 4}) {
      Case c;
      c.fn = fn, c.Hq = 4, c.Hkv = hkv, c.causal = true, c.offset = 2;
      check_case(c);
    }
  // Head h must read kv head h / (Hq / Hkv): changing kv head 1 changes only heads 2 and 3.
  Case c;
  c.Hq = 4, c.Hkv = 2;
  Built bt = build(c);
  AttentionOutput o1 = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
  Tensor v2 = bt.v.clone();
  v2.set({0, 1, 0, 0}, 5.f);
  AttentionOutput o2 = attention_forward(bt.q, bt.k, v2, bt.ex, bt.opts);
  for (int64_t h = 0; h < 4; ++h) {
    const bool changed = o1.out.get({0, h, 0, 0}) != o2.out.get({0, h, 0, 0});
    EXPECT_EQ(changed, h >= 2) << "head " << h;
  }
}

TEST(AttentionForward, FullyMaskedRowsGiveZerosAndNegInfLse) {
  for (ScoreFn fn : kAllFns) {
    Case c;
    c.fn = fn, c.B = 2, c.Nq = 4, c.Nk = 6;
    c.causal = true, c.offset = -2;  // rows 0 and 1 see no key
    c.key_lengths = {6, 0};          // batch 1 sees no key at all
    Built bt = build(c);
    AttentionOutput o = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
    ASSERT_EQ(o.out.shape(), (Shape{2, 4, 4, 4}));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t i = 0; i < 4; ++i) {
          const bool masked = b == 1 || i < 2;
          const float lse = o.lse.get({b, h, i});
          EXPECT_FALSE(std::isnan(lse));
          EXPECT_EQ(masked, std::isinf(lse) && lse < 0) << b << h << i;
          for (int64_t d = 0; d < 4; ++d) {
            const float x = o.out.get({b, h, i, d});
            EXPECT_FALSE(std::isnan(x));
            if (masked) {
              EXPECT_EQ(x, 0.f);
            }
          }
          for (int64_t j = 0; j < 6; ++j) {
            const float w = o.weights.get({b, h, i, j});
            EXPECT_FALSE(std::isnan(w));
            if (masked) {
              EXPECT_EQ(w, 0.f);
            }
          }
        }
    check_against_direct(c, bt);
  }
}

TEST(AttentionForward, Rank2And3Inputs) {
  for (ScoreFn fn : kAllFns) {
    Case c;
    c.fn = fn, c.rank = 3, c.B = 1, c.Hq = 2, c.Hkv = 1, c.causal = true, c.offset = 1;
    check_case(c);
    c.rank = 2, c.Hq = 1, c.bias_shape = {c.Nq, c.Nk};
    check_case(c);
    c.bias_shape = {1, 1, c.Nq, c.Nk};
    c.key_lengths = {4};
    check_case(c);
  }
}

TEST(AttentionForward, StridedInputsMatchContiguous) {
  for (ScoreFn fn : kAllFns) {
    Case c;
    c.fn = fn, c.Dk = (fn == ScoreFn::general || fn == ScoreFn::additive) ? 2 : c.D;
    c.causal = true, c.offset = 2;
    Built bt = build(c);
    // q as the [B, Nq, Hq, D] layout transposed (last dim contiguous, no copy needed),
    // k sliced out of a wider last dimension (row stride > Dk),
    // v transposed in its last two dims (last dim not contiguous: the library must copy).
    Tensor qt = bt.q.transpose(1, 2).contiguous().transpose(1, 2);
    ASSERT_FALSE(qt.is_contiguous());
    Tensor kwide = random_tensor({c.B, c.Hkv, c.Nk, c.Dk + 3}, 99);
    Tensor ks = kwide.slice(3, 1, 1 + c.Dk);
    ks.copy_from(bt.k);
    ASSERT_FALSE(ks.is_contiguous());
    Tensor vt = bt.v.transpose(2, 3).contiguous().transpose(2, 3);
    ASSERT_NE(vt.stride(3), 1);
    Built strided = bt;
    strided.q = qt, strided.k = ks, strided.v = vt;
    check_against_direct(c, strided);
    // A query-row slice: rows 2..4 of q against all keys, offset kept consistent.
    Tensor qrows = bt.q.slice(2, 2, 5);
    AttentionOutput o = attention_forward(qrows, bt.k, bt.v, bt.ex, [&] {
      AttentionOptions op = bt.opts;
      op.query_offset += 2;
      return op;
    }());
    AttentionOutput full = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
    Tensor want = full.out.slice(2, 2, 5);
    std::vector<float> wv = want.to_vector();
    EXPECT_TRUE(close_to(o.out, want.shape(), std::vector<double>(wv.begin(), wv.end()), 0, 0));
  }
}

TEST(AttentionForward, Bf16InputsAreConvertedExactly) {
  for (ScoreFn fn : kAllFns) {
    Case c;
    c.fn = fn, c.causal = true, c.bias_shape = {c.Nq, c.Nk};
    Built bt = build(c);
    Built b16 = bt;
    b16.q = bt.q.to(DType::bf16), b16.k = bt.k.to(DType::bf16), b16.v = bt.v.to(DType::bf16);
    b16.ex.bias = bt.ex.bias.to(DType::bf16);
    if (bt.ex.w.defined()) b16.ex.w = bt.ex.w.to(DType::bf16);
    // The direct formula sees the bf16-rounded values.
    b16.in.q = to_double(b16.q), b16.in.k = to_double(b16.k), b16.in.v = to_double(b16.v);
    if (bt.ex.w.defined()) b16.in.w = to_double(b16.ex.w);
    std::vector<double> bias = to_double(b16.ex.bias);
    for (int64_t n = 0; n < static_cast<int64_t>(b16.in.bias.size()); ++n)
      b16.in.bias[n] = bias[n % (c.Nq * c.Nk)];
    check_against_direct(c, b16);
    AttentionOutput o = attention_forward(b16.q, b16.k, b16.v, b16.ex, b16.opts);
    EXPECT_EQ(o.out.dtype(), DType::f32);
  }
}

TEST(AttentionForward, HugeWindowSidesMeanUnbounded) {
  // INT64_MAX sides must behave as "no limit" (and not overflow: the sanitizer build checks).
  const int64_t big = std::numeric_limits<int64_t>::max();
  for (int64_t offset : {-3, 0, 4}) {
    Case c;
    c.causal = true, c.offset = offset;
    Built bt = build(c);
    AttentionOutput plain = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
    bt.opts.window = Window{big, big};
    AttentionOutput windowed = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
    ASSERT_EQ(windowed.out.shape(), plain.out.shape());
    EXPECT_EQ(windowed.out.to_vector(), plain.out.to_vector());
    EXPECT_EQ(windowed.lse.to_vector(), plain.lse.to_vector());
    // A bounded side with a huge other side matches the direct formula.
    c.window = Window{1, big};
    check_case(c);
    c.window = Window{big, 0};
    check_case(c);
  }
}

TEST(AttentionForward, ScaleAndTemperatureOptions) {
  Case c;
  c.scale = 0.37;
  check_case(c);
  c.scale = 0.0;  // uniform weights over visible keys
  check_case(c);
  c.scale.reset();
  c.fn = ScoreFn::cosine, c.temperature = 0.1;
  check_case(c);
}

TEST(AttentionForward, CosineZeroRowsScoreZero) {
  Case c;
  c.fn = ScoreFn::cosine, c.B = 1, c.Hq = 1, c.Hkv = 1, c.Nq = 2, c.Nk = 3;
  Built bt = build(c);
  for (int64_t d = 0; d < c.D; ++d) {
    bt.q.set({0, 0, 0, d}, 0.f);  // query 0 has no direction
    bt.k.set({0, 0, 1, d}, 0.f);  // key 1 has no direction
  }
  bt.in.q = to_double(bt.q), bt.in.k = to_double(bt.k);
  check_against_direct(c, bt);
  AttentionOutput o = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
  // Query 0 scores every key 0: uniform weights.
  for (int64_t j = 0; j < 3; ++j) EXPECT_NEAR(o.weights.get({0, 0, 0, j}), 1.0 / 3, 1e-7);
}

TEST(AttentionForward, AutomaticBackendMatchesDirectFormula) {
  Case c;
  Built bt = build(c);
  AttentionOptions op = bt.opts;
  op.backend = AttentionBackend::automatic;
  check_against_direct(c, Built{bt.q, bt.k, bt.v, bt.ex, op, bt.in});
}

TEST(AttentionForward, FusedBackendRunsCorrectlyOrSaysItIsNotBuilt) {
  // Until the fused kernels land, backend fused throws; afterwards it must match.
  Case c;
  c.causal = true;
  Built bt = build(c);
  bt.opts.backend = AttentionBackend::fused;
  bt.opts.need_weights = false;  // the one path a fused kernel need not cover
  try {
    AttentionOutput o = attention_forward(bt.q, bt.k, bt.v, bt.ex, bt.opts);
    test::DirectResult want = direct_attention(bt.in);
    // A fused kernel in f32 with a fast exp: looser than the reference's one rounding.
    EXPECT_TRUE(close_to(o.out, {c.B, c.Hq, c.Nq, c.Dv}, want.out, 1e-4, 1e-4)) << "out";
    EXPECT_TRUE(close_to(o.lse, {c.B, c.Hq, c.Nq}, want.lse, 1e-4, 1e-4)) << "lse";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention: the fused backend is not built"), std::string::npos)
        << e.what();
  }
}

TEST(ScoreFnNames, RoundTrip) {
  for (ScoreFn fn : kAllFns) EXPECT_EQ(parse_score_fn(score_fn_name(fn)), fn);
  EXPECT_STREQ(score_fn_name(ScoreFn::scaled_dot), "scaled_dot");
  try {
    parse_score_fn("bilinear");
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bilinear"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("attention"), std::string::npos);
  }
}

}  // namespace
}  // namespace attn
