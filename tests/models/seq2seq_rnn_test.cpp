// Seq2SeqRNN: gradients of the loss by central differences (f64) for every attention
// variant and both cells, the padding mask, config JSON round trip and argument errors. (The
// fused additive score's own tests: tests/autograd/additive_score_test.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attn/autograd/gradcheck.h"
#include "attn/autograd/ops.h"
#include "attn/models/seq2seq_rnn.h"

namespace attn::models {
namespace {

using ag::Var;

Seq2SeqRNNConfig tiny_config(AttentionKind kind, CellKind cell, bool input_feeding = true) {
  Seq2SeqRNNConfig c;
  c.src_vocab = 7;
  c.tgt_vocab = 6;
  c.embed_dim = 3;
  c.hidden_dim = 2;
  c.decoder_dim = kind == AttentionKind::luong_dot ? 4 : 3;
  c.attn_dim = 3;
  c.location_filters = 2;
  c.location_kernel = 3;
  c.attention = kind;
  c.cell = cell;
  c.input_feeding = input_feeding;
  return c;
}

// Two sources (lengths 4 and 2, the second padded) and targets of length 3 and 2.
struct TinyBatch {
  Tensor src = Tensor::from_vector_i32({4, 5, 6, 3, 6, 4, 0, 0}, {2, 4});
  Tensor src_lengths = Tensor::from_vector_i32({4, 2}, {2});
  Tensor tgt_in = Tensor::from_vector_i32({1, 3, 4, 5, 1, 5, 3, 0}, {2, 4});
  Tensor tgt_out = Tensor::from_vector_i32({3, 4, 5, 2, 5, 3, 2, 0}, {2, 4});
};

Var loss_of(Seq2SeqRNN& model, const TinyBatch& b, double smoothing = 0.1) {
  Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  const int64_t B = out.logits.size(0), T = out.logits.size(1), V = out.logits.size(2);
  return ag::cross_entropy(ag::reshape(out.logits, {B * T, V}), b.tgt_out.reshape({B * T}), 0, smoothing);
}

struct Variant {
  AttentionKind kind;
  CellKind cell;
  bool input_feeding;
};

std::string variant_name(const ::testing::TestParamInfo<Variant>& info) {
  std::string s = attention_name(info.param.kind) + (info.param.cell == CellKind::gru ? "_gru" : "_lstm") +
                  (info.param.input_feeding ? "" : "_nofeed");
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

class Seq2SeqRNNGrad : public ::testing::TestWithParam<Variant> {};

TEST_P(Seq2SeqRNNGrad, LossGradientMatchesCentralDifferences) {
  const Variant v = GetParam();
  Rng rng(7, 0);
  Seq2SeqRNN model(tiny_config(v.kind, v.cell, v.input_feeding), rng);
  model.to(DType::f64);
  TinyBatch b;
  std::vector<Var> leaves = model.parameters();
  ASSERT_FALSE(leaves.empty());
  ag::GradcheckResult r = ag::gradcheck([&] { return loss_of(model, b); }, leaves);
  EXPECT_GT(r.checked, 50);
  EXPECT_TRUE(r.ok) << r.report;
  EXPECT_LT(r.max_abs_err, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, Seq2SeqRNNGrad,
    ::testing::Values(Variant{AttentionKind::bahdanau, CellKind::gru, true},
                      Variant{AttentionKind::bahdanau, CellKind::lstm, true},
                      Variant{AttentionKind::location, CellKind::gru, true},
                      Variant{AttentionKind::luong_dot, CellKind::gru, true},
                      Variant{AttentionKind::luong_general, CellKind::lstm, true},
                      Variant{AttentionKind::luong_general, CellKind::gru, false},
                      Variant{AttentionKind::luong_concat, CellKind::gru, true}),
    variant_name);

TEST(Seq2SeqRNN, OutputShapesAndWeightsAreDistributions) {
  Rng rng(3, 0);
  Seq2SeqRNN model(tiny_config(AttentionKind::bahdanau, CellKind::gru), rng);
  TinyBatch b;
  Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  ASSERT_EQ(out.logits.shape(), (Shape{2, 4, 6}));
  ASSERT_EQ(out.attention.shape(), (Shape{2, 4, 4}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t t = 0; t < 4; ++t) {
      double sum = 0;
      for (int64_t j = 0; j < 4; ++j) sum += out.attention.get({i, t, j});
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
}

class Seq2SeqRNNMask : public ::testing::TestWithParam<AttentionKind> {};

// A padded source position gets weight exactly 0, and neither the padding's token ids nor
// the amount of padding change the outputs of the shorter example.
TEST_P(Seq2SeqRNNMask, PaddingIsInvisible) {
  Rng rng(5, 0);
  Seq2SeqRNN model(tiny_config(GetParam(), CellKind::gru), rng);
  model.to(DType::f64);
  TinyBatch b;
  Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t j = 2; j < 4; ++j) EXPECT_EQ(out.attention.get({1, t, j}), 0.0f) << "step " << t << " pos " << j;
  // Same second example with garbage in the padding and two more padded columns.
  Tensor src2 = Tensor::from_vector_i32({4, 5, 6, 3, 1, 2, 6, 4, 5, 5, 3, 3}, {2, 6});
  Seq2SeqOutput out2 = model.forward(src2, b.src_lengths, b.tgt_in);
  // ... and the example alone, unpadded.
  Tensor src1 = Tensor::from_vector_i32({6, 4}, {1, 2});
  Tensor len1 = Tensor::from_vector_i32({2}, {1});
  Tensor tin1 = Tensor::from_vector_i32({1, 5, 3, 0}, {1, 4});
  Seq2SeqOutput out1 = model.forward(src1, len1, tin1);
  ASSERT_EQ(out2.logits.shape(), out.logits.shape());
  ASSERT_EQ(out1.logits.shape(), (Shape{1, 4, 6}));
  const double* l = out.logits.value().data<double>();
  const double* l2 = out2.logits.value().data<double>();
  const double* l1 = out1.logits.value().data<double>();
  for (int64_t k = 0; k < 4 * 6; ++k) {
    EXPECT_NEAR(l2[4 * 6 + k], l[4 * 6 + k], 1e-12) << k;
    EXPECT_NEAR(l1[k], l[4 * 6 + k], 1e-12) << k;
  }
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t j = 2; j < 6; ++j) EXPECT_EQ(out2.attention.get({1, t, j}), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Variants, Seq2SeqRNNMask,
                         ::testing::Values(AttentionKind::bahdanau, AttentionKind::location, AttentionKind::luong_dot,
                                           AttentionKind::luong_general, AttentionKind::luong_concat),
                         [](const ::testing::TestParamInfo<AttentionKind>& i) {
                           std::string s = attention_name(i.param);
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// The padded positions also get no gradient through attention: changing the encoder output
// there (via the embedding of the padding token, row 0 is frozen, so use the loss w.r.t. the
// memory) leaves the loss unchanged. Checked directly on RnnAttention.
TEST(RnnAttention, PaddedPositionsGetNoGradient) {
  for (AttentionKind kind : {AttentionKind::bahdanau, AttentionKind::location, AttentionKind::luong_general}) {
    Rng rng(11, 0);
    RnnAttention att(kind, 3, 3, 4, rng, 2, 3);
    att.to(DType::f64);
    Var values(ag::random_tensor({2, 5, 3}, rng), true);
    Var query(ag::random_tensor({2, 3}, rng), true);
    Tensor lengths = Tensor::from_vector_i32({5, 3}, {2});
    AttentionMemory m = att.prepare(values, lengths);
    auto [w, ctx] = att.forward(m, query);
    ag::sum(ag::mul(ctx, ctx)).backward();
    ASSERT_TRUE(values.grad().defined());
    for (int64_t j = 3; j < 5; ++j)
      for (int64_t d = 0; d < 3; ++d) EXPECT_EQ(values.grad().get({1, j, d}), 0.0f) << attention_name(kind);
    EXPECT_NE(values.grad().get({1, 0, 0}), 0.0f);
  }
}

TEST(Seq2SeqRNNConfig, JsonRoundTripAndErrors) {
  Seq2SeqRNNConfig c = tiny_config(AttentionKind::location, CellKind::lstm, false);
  c.dropout = 0.25;
  Seq2SeqRNNConfig d = Seq2SeqRNNConfig::from_json(c.to_json());
  EXPECT_EQ(d.to_json(), c.to_json());
  EXPECT_EQ(d.attention, AttentionKind::location);
  EXPECT_EQ(d.cell, CellKind::lstm);
  EXPECT_FALSE(d.input_feeding);
  nlohmann::json j = c.to_json();
  j["attention"] = "luong-fancy";
  EXPECT_THROW(Seq2SeqRNNConfig::from_json(j), Error);
  j = c.to_json();
  j["attention"] = "luong-dot";  // decoder_dim 3 != 2 * hidden_dim 4
  try {
    Seq2SeqRNNConfig::from_json(j);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("luong-dot"), std::string::npos) << e.what();
  }
}

TEST(Seq2SeqRNN, BadInputsThrow) {
  Rng rng(3, 0);
  Seq2SeqRNN model(tiny_config(AttentionKind::bahdanau, CellKind::gru), rng);
  TinyBatch b;
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({4, 2, 1}, {3}), b.tgt_in), Error);
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({5, 2}, {2}), b.tgt_in), Error);  // length > S
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({4, 0}, {2}), b.tgt_in), Error);  // empty source
  EXPECT_THROW(model.forward(b.src, b.src_lengths, Tensor::from_vector_i32({1, 1, 1}, {3, 1})), Error);
}

}  // namespace
}  // namespace attn::models
