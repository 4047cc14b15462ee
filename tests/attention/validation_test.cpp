// Every bad argument to attention_forward / attention_backward throws attn::Error with a
// one-line message that names the op and the argument (and the shapes where they matter).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "attention/attention_test_util.h"

namespace attn {
namespace {

using test::random_tensor;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInfF = std::numeric_limits<float>::infinity();

// A valid call: q [2, 4, 5, 16], k, v [2, 2, 7, 16], which each test breaks in one way.
struct Call {
  Tensor q = random_tensor({2, 4, 5, 16}, 1);
  Tensor k = random_tensor({2, 2, 7, 16}, 2);
  Tensor v = random_tensor({2, 2, 7, 16}, 3);
  AttentionExtras ex;
  AttentionOptions opts;
  AttentionOutput forward() const { return attention_forward(q, k, v, ex, opts); }
};

// Runs fn, expects attn::Error whose one-line message contains every needle.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected attn::Error containing '" << *needles.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("attention", 0), 0u) << "op not named first: " << msg;
    for (const std::string& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing from: " << msg;
  }
}

void expect_forward_error(const Call& c, std::initializer_list<std::string> needles) {
  expect_error([&] { c.forward(); }, needles);
}

TEST(AttentionValidation, ValidCallRuns) {
  Call c;
  AttentionOutput o = c.forward();
  EXPECT_EQ(o.out.shape(), (Shape{2, 4, 5, 16}));
}

TEST(AttentionValidation, UndefinedAndDtypes) {
  Call c;
  c.q = Tensor();
  expect_forward_error(c, {"q is undefined"});
  c = Call();
  c.k = Tensor::zeros({2, 2, 7, 16}, DType::i32);
  expect_forward_error(c, {"k has dtype i32", "[2, 2, 7, 16]", "f32 or bf16"});
  c = Call();
  c.v = Tensor::zeros({2, 2, 7, 16}, DType::i32);
  expect_forward_error(c, {"v has dtype i32"});
}

TEST(AttentionValidation, Ranks) {
  Call c;
  c.q = random_tensor({1, 2, 4, 5, 16}, 1);
  expect_forward_error(c, {"q has shape [1, 2, 4, 5, 16]", "rank 5", "2-D [N, D]"});
  c.q = random_tensor({16}, 1);
  expect_forward_error(c, {"q has shape [16]", "rank 1"});
  c = Call();
  c.k = random_tensor({7, 16}, 2);
  expect_forward_error(c, {"k has shape [7, 16]", "q has shape [2, 4, 5, 16]", "same rank"});
  c = Call();
  c.v = random_tensor({2, 7, 16}, 2);
  expect_forward_error(c, {"v has shape [2, 7, 16]", "same rank"});
}

TEST(AttentionValidation, EmptyDimensionsAreRejected) {
  for (auto [name, shape] : {std::pair<std::string, Shape>{"q", {2, 4, 0, 16}}, {"k", {2, 2, 0, 16}},
                             {"v", {2, 2, 7, 0}}, {"q", {0, 4, 5, 16}}, {"q", {2, 4, 5, 0}}}) {
    Call c;
    (name == "q" ? c.q : name == "k" ? c.k : c.v) = Tensor::zeros(shape);
    expect_forward_error(c, {name + " has shape " + shape_str(shape), "at least 1"});
  }
}

TEST(AttentionValidation, HeadAndSizeMismatches) {
  Call c;
  c.k = random_tensor({2, 3, 7, 16}, 2);
  c.v = random_tensor({2, 3, 7, 16}, 3);
  expect_forward_error(c, {"attention: k has shape [2, 3, 7, 16] but q has shape [2, 4, 5, 16]; "
                           "expected k [B=2, Hkv dividing Hq=4, Nk, D=16]"});
  c = Call();
  c.k = random_tensor({3, 2, 7, 16}, 2);
  expect_forward_error(c, {"k has shape [3, 2, 7, 16]", "B=2"});
  c = Call();
  c.k = random_tensor({2, 2, 7, 8}, 2);
  expect_forward_error(c, {"k has shape [2, 2, 7, 8]", "D=16"});
  c = Call();
  c.v = random_tensor({2, 2, 6, 16}, 3);
  expect_forward_error(c, {"v has shape [2, 2, 6, 16]", "k has shape [2, 2, 7, 16]", "Nk=7"});
  c = Call();
  c.v = random_tensor({2, 1, 7, 16}, 3);
  expect_forward_error(c, {"v has shape [2, 1, 7, 16]", "Hkv=2"});
  c = Call();
  c.v = random_tensor({1, 2, 7, 16}, 3);
  expect_forward_error(c, {"v has shape [1, 2, 7, 16]", "B=2"});
  // Rank 2: the expected shape is given at that rank.
  c = Call();
  c.q = random_tensor({5, 16}, 1), c.k = random_tensor({7, 8}, 2), c.v = random_tensor({7, 3}, 3);
  expect_forward_error(c, {"expected k [Nk, D=16]"});
}

TEST(AttentionValidation, ScoreParameters) {
  Call c;
  c.opts.score = ScoreFn::general;
  expect_forward_error(c, {"score general needs w", "[D=16, Dk=16]", "missing"});
  c.ex.w = random_tensor({16, 8}, 4);
  expect_forward_error(c, {"w has shape [16, 8]", "expected w [D=16, Dk=16]"});
  c.ex.w = Tensor::zeros({16, 16}, DType::i32);
  expect_forward_error(c, {"w has dtype i32"});
  c.ex.w = random_tensor({16, 16}, 4);
  EXPECT_NO_THROW(c.forward());
  c.opts.score = ScoreFn::dot;
  expect_forward_error(c, {"w is given", "score is dot", "general only"});

  c = Call();
  c.opts.score = ScoreFn::additive;
  c.ex.wq = random_tensor({6, 16}, 5);
  c.ex.wk = random_tensor({6, 16}, 6);
  c.ex.va = random_tensor({6}, 7);
  EXPECT_NO_THROW(c.forward());
  for (const char* name : {"wq", "wk", "va"}) {
    Call d = c;
    Tensor& t = std::string(name) == "wq" ? d.ex.wq : std::string(name) == "wk" ? d.ex.wk : d.ex.va;
    t = Tensor();
    expect_forward_error(d, {std::string("score additive needs ") + name, "missing"});
  }
  Call d = c;
  d.ex.wq = random_tensor({6, 15}, 5);
  expect_forward_error(d, {"wq has shape [6, 15]", "[A=6, D=16]"});
  d = c;
  d.ex.wk = random_tensor({5, 16}, 6);
  expect_forward_error(d, {"wk has shape [5, 16]", "[A=6, Dk=16]"});
  d = c;
  d.ex.va = random_tensor({6, 1}, 7);
  expect_forward_error(d, {"va has shape [6, 1]", "[A=6]"});
  d = c;
  d.ex.wq = random_tensor({0, 16}, 5);
  expect_forward_error(d, {"wq has shape [0, 16]", "A >= 1"});
  d = c;
  d.opts.score = ScoreFn::general;
  d.ex.w = random_tensor({16, 16}, 4);
  expect_forward_error(d, {"wq is given", "score is general", "additive only"});
}

TEST(AttentionValidation, KeyLengths) {
  Call c;
  c.ex.key_lengths = Tensor::zeros({2});
  expect_forward_error(c, {"key_lengths has dtype f32", "expected i32"});
  c.ex.key_lengths = Tensor::from_vector_i32({1, 2, 3}, {3});
  expect_forward_error(c, {"key_lengths has shape [3]", "[B=2]"});
  c.ex.key_lengths = Tensor::from_vector_i32({1, 8}, {2});
  expect_forward_error(c, {"key_lengths[1] = 8", "[0, Nk=7]"});
  c.ex.key_lengths = Tensor::from_vector_i32({-1, 7}, {2});
  expect_forward_error(c, {"key_lengths[0] = -1"});
  c.ex.key_lengths = Tensor::from_vector_i32({0, 7}, {2});
  EXPECT_NO_THROW(c.forward());
}

TEST(AttentionValidation, Bias) {
  Call c;
  c.ex.bias = random_tensor({4, 5, 7}, 8);
  expect_forward_error(c, {"bias has shape [4, 5, 7]", "[Nq=5, Nk=7] or [B=2 or 1, Hq=4 or 1, Nq=5, Nk=7]"});
  c.ex.bias = random_tensor({3, 4, 5, 7}, 8);
  expect_forward_error(c, {"bias has shape [3, 4, 5, 7]"});
  c.ex.bias = random_tensor({2, 2, 5, 7}, 8);
  expect_forward_error(c, {"bias has shape [2, 2, 5, 7]"});
  c.ex.bias = random_tensor({1, 1, 5, 1}, 8);  // Nq, Nk never broadcast
  expect_forward_error(c, {"bias has shape [1, 1, 5, 1]"});
  c.ex.bias = random_tensor({5, 6}, 8);
  expect_forward_error(c, {"bias has shape [5, 6]"});
  c.ex.bias = Tensor::zeros({5, 7}, DType::i32);
  expect_forward_error(c, {"bias has dtype i32"});
  c.ex.bias = random_tensor({2, 1, 5, 7}, 8);
  c.ex.bias.set({1, 0, 2, 3}, kNaN);
  expect_forward_error(c, {"bias holds NaN at [1, 0, 2, 3]", "finite or -inf"});
  c.ex.bias.set({1, 0, 2, 3}, kInfF);
  expect_forward_error(c, {"bias holds +inf at [1, 0, 2, 3]"});
  c.ex.bias.set({1, 0, 2, 3}, -kInfF);  // -inf is a mask
  EXPECT_NO_THROW(c.forward());
  // A transposed (strided) bias is scanned in place; the index is that of the view.
  c.ex.bias = random_tensor({2, 1, 7, 5}, 8).transpose(2, 3);
  ASSERT_FALSE(c.ex.bias.is_contiguous());
  c.ex.bias.set({1, 0, 4, 6}, kNaN);
  expect_forward_error(c, {"bias holds NaN at [1, 0, 4, 6]"});
  c.ex.bias = c.ex.bias.to(DType::bf16);
  expect_forward_error(c, {"bias holds NaN at [1, 0, 4, 6]"});
}

TEST(AttentionValidation, Options) {
  auto with = [](auto edit) {
    Call c;
    edit(c.opts);
    return c;
  };
  for (double p : {-0.1, 1.0, 2.0, static_cast<double>(kNaN)})
    expect_forward_error(with([&](AttentionOptions& o) { o.dropout = p; }), {"dropout", "[0, 1)"});
  for (double t : {0.0, -1.0, static_cast<double>(kInfF), static_cast<double>(kNaN)})
    expect_forward_error(with([&](AttentionOptions& o) { o.score = ScoreFn::cosine, o.temperature = t; }),
                         {"temperature", "positive and finite"});
  for (double s : {static_cast<double>(kInfF), static_cast<double>(kNaN)})
    expect_forward_error(with([&](AttentionOptions& o) { o.scale = s; }), {"scale", "finite"});
  expect_forward_error(with([](AttentionOptions& o) { o.score = ScoreFn::dot, o.scale = 0.5; }),
                       {"scale = 0.5 is set but score is dot", "scaled_dot only"});
  expect_forward_error(with([](AttentionOptions& o) { o.query_offset = std::numeric_limits<int64_t>::min(); }),
                       {"query_offset", "out of range"});
  expect_forward_error(with([](AttentionOptions& o) { o.window = Window{-1, 0}; }), {"window left = -1"});
  expect_forward_error(with([](AttentionOptions& o) { o.window = Window{0, -2}; }), {"window right = -2"});
  expect_forward_error(with([](AttentionOptions& o) { o.score = static_cast<ScoreFn>(9); }),
                       {"score has invalid value 9"});
  expect_forward_error(with([](AttentionOptions& o) { o.backend = static_cast<AttentionBackend>(7); }),
                       {"backend has invalid value 7"});
}

TEST(AttentionValidation, CheckFiniteNamesTheTensor) {
  Call c;
  c.q.set({1, 2, 3, 4}, kNaN);
  EXPECT_NO_THROW(c.forward());  // not checked unless asked
  c.opts.check_finite = true;
  expect_forward_error(c, {"q holds NaN at [1, 2, 3, 4]", "check_finite"});
  c = Call();
  c.opts.check_finite = true;
  c.q = c.q.transpose(1, 2).contiguous().transpose(1, 2);
  c.q.set({1, 3, 4, 15}, kNaN);
  expect_forward_error(c, {"q holds NaN at [1, 3, 4, 15]"});
  c = Call();
  c.opts.check_finite = true;
  c.v.set({0, 1, 6, 15}, -kInfF);
  expect_forward_error(c, {"v holds -inf at [0, 1, 6, 15]"});
  c = Call();
  c.opts.check_finite = true;
  c.k = c.k.to(DType::bf16);
  c.k.set({0, 0, 0, 0}, kInfF);
  expect_forward_error(c, {"k holds +inf at [0, 0, 0, 0]"});
  c = Call();
  c.opts.check_finite = true, c.opts.score = ScoreFn::general;
  c.ex.w = random_tensor({16, 16}, 4);
  c.ex.w.set({3, 3}, kNaN);
  expect_forward_error(c, {"w holds NaN at [3, 3]"});
}

TEST(AttentionValidation, BackwardArguments) {
  Call c;
  AttentionOutput fwd = c.forward();
  Tensor dout = random_tensor({2, 4, 5, 16}, 9);
  auto backward = [&](const AttentionOutput& f, const Tensor& d) {
    return [&c, f, d] { attention_backward(c.q, c.k, c.v, c.ex, c.opts, f, d); };
  };
  EXPECT_NO_THROW(backward(fwd, dout)());
  expect_error(backward(fwd, random_tensor({2, 4, 5, 15}, 9)),
               {"attention backward: dout has shape [2, 4, 5, 15]", "expected dout [2, 4, 5, 16]"});
  expect_error(backward(fwd, Tensor()), {"dout is undefined"});
  expect_error(backward(fwd, Tensor::zeros({2, 4, 5, 16}, DType::i32)), {"dout has dtype i32"});
  AttentionOutput bad = fwd;
  bad.out = Tensor();
  expect_error(backward(bad, dout), {"fwd.out is undefined"});
  bad = fwd;
  bad.lse = random_tensor({2, 4, 6}, 1);
  expect_error(backward(bad, dout), {"fwd.lse has shape [2, 4, 6]", "expected fwd.lse [2, 4, 5]"});
  // The inputs are validated as in the forward.
  Call e = c;
  e.opts.dropout = 1.5;
  expect_error([&] { attention_backward(e.q, e.k, e.v, e.ex, e.opts, fwd, dout); },
               {"attention backward: dropout = 1.5"});
  Tensor nan_dout = dout.clone();
  nan_dout.set({0, 0, 0, 0}, kNaN);
  e = c;
  e.opts.check_finite = true;
  expect_error([&] { attention_backward(e.q, e.k, e.v, e.ex, e.opts, fwd, nan_dout); },
               {"dout holds NaN at [0, 0, 0, 0]"});
}

}  // namespace
}  // namespace attn
