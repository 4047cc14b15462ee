// Module basics, Linear, Embedding, LayerNorm, Dropout, positional encodings, GRU, LSTM.
#include <gtest/gtest.h>

#include <cmath>

#include "attn/autograd/ops.h"
#include "attn/nn/dropout.h"
#include "attn/nn/embedding.h"
#include "attn/nn/layer_norm.h"
#include "attn/nn/linear.h"
#include "attn/nn/positional_encoding.h"
#include "attn/nn/rnn.h"
#include "nn_util.h"

namespace attn::nn {
namespace {

using namespace testing;

TEST(Module, NamesGradsAndSharedStorage) {
  Rng rng(1);
  Linear lin(4, 3, rng);
  EXPECT_EQ(names(lin), (std::vector<std::string>{"weight", "bias"}));
  NamedParams ps = lin.named_parameters("enc");
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].name, "enc.weight");
  EXPECT_EQ(ps[0].value.shape(), (Shape{3, 4}));
  ASSERT_TRUE(ps[0].grad.defined());
  EXPECT_EQ(ps[0].grad.shape(), (Shape{3, 4}));
  // Backward fills the very tensors handed out; an in-place update is seen by the module.
  Var x(Tensor::full({2, 4}, 1.f));
  ag::sum(lin.forward(x)).backward();
  EXPECT_FLOAT_EQ(ps[1].grad.get({0}), 2.f);
  ps[1].value.set({0}, 5.f);
  EXPECT_FLOAT_EQ(lin.bias.value().get({0}), 5.f);
  lin.zero_grad();
  EXPECT_FLOAT_EQ(ps[1].grad.get({0}), 0.f);
  EXPECT_EQ(lin.num_parameters(), 15);
  EXPECT_THROW(lin.parameter("nope"), Error);
}

TEST(Module, DeterministicInitFromSeed) {
  Rng a(7), b(7), c(8);
  Linear l1(5, 6, a), l2(5, 6, b), l3(5, 6, c);
  EXPECT_EQ(l1.weight.value().to_vector(), l2.weight.value().to_vector());
  EXPECT_NE(l1.weight.value().to_vector(), l3.weight.value().to_vector());
  for (float v : l1.weight.value().to_vector()) EXPECT_LE(std::abs(v), 1 / std::sqrt(5.f));
}

TEST(Layers, LinearEmbeddingLayerNormGradcheck) {
  Rng rng(2);
  Linear lin(4, 3, rng);
  lin.to(DType::f64);
  Var x = leaf({2, 5, 4}, rng);
  expect_gradcheck([&] { return lin.forward(x); }, with(lin.parameters(), {x}));

  Embedding emb(6, 3, rng, 1);
  EXPECT_EQ(names(emb), (std::vector<std::string>{"weight"}));
  for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(emb.weight.value().get({1, j}), 0.f);
  emb.to(DType::f64);
  // The padding row's value is read but gets no gradient (torch's padding_idx), so the
  // central-difference check uses ids without it and the padding row is checked apart.
  Tensor ids = Tensor::from_vector_i32({0, 4, 5, 3, 2, 0}, {2, 3});
  expect_gradcheck([&] { return emb.forward(ids); }, emb.parameters());
  emb.zero_grad();
  ag::sum(emb.forward(Tensor::from_vector_i32({1, 2, 1}, {3}))).backward();
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(emb.weight.grad().get({1, j}), 0.f);
    EXPECT_EQ(emb.weight.grad().get({2, j}), 1.f);
  }

  LayerNorm ln(4);
  EXPECT_EQ(names(ln), (std::vector<std::string>{"weight", "bias"}));
  ln.to(DType::f64);
  expect_gradcheck([&] { return ln.forward(x); }, with(ln.parameters(), {x}));
  EXPECT_THROW(ln.forward(leaf({2, 3}, rng)), Error);
}

TEST(Layers, DropoutTrainAndEval) {
  Rng rng(3);
  Dropout d(0.5, rng);
  Var x(Tensor::full({1000}, 1.f), true);
  Var y1 = d.forward(x), y2 = d.forward(x);
  int zeros = 0;
  for (float v : y1.value().to_vector()) zeros += v == 0.f;
  EXPECT_GT(zeros, 400);
  EXPECT_LT(zeros, 600);
  EXPECT_NE(y1.value().to_vector(), y2.value().to_vector());  // a fresh mask per call
  d.eval();
  EXPECT_FALSE(d.is_training());
  EXPECT_EQ(d.forward(x).value().to_vector(), x.value().to_vector());
}

TEST(Layers, PositionalEncodings) {
  SinusoidalPositionalEncoding pe(6, 10);
  EXPECT_TRUE(names(pe).empty());
  ASSERT_EQ(pe.named_buffers().size(), 1u);
  EXPECT_EQ(pe.named_buffers()[0].first, "pe");
  Var x(Tensor::zeros({2, 3, 6}));
  Tensor y = pe.forward(x, 2).value();
  EXPECT_NEAR(y.get({1, 1, 0}), std::sin(3.0), 1e-6);
  EXPECT_NEAR(y.get({0, 0, 1}), std::cos(2.0), 1e-6);
  EXPECT_NEAR(y.get({0, 2, 4}), std::sin(4.0 / std::pow(10000.0, 4.0 / 6)), 1e-6);
  EXPECT_THROW(pe.forward(x, 8), Error);
  Rng rng(4);
  LearnedPositionalEncoding lp(6, 10, rng);
  lp.to(DType::f64);
  Var x64 = leaf({2, 3, 6}, rng);
  expect_gradcheck([&] { return lp.forward(x64, 1); }, with(lp.parameters(), {x64}));
}

TEST(Rnn, ParameterNamesFollowTorch) {
  Rng rng(5);
  GRU gru({.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}, rng);
  EXPECT_EQ(names(gru), (std::vector<std::string>{
                            "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                            "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse", "weight_ih_l1",
                            "weight_hh_l1", "bias_ih_l1", "bias_hh_l1", "weight_ih_l1_reverse",
                            "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"}));
  EXPECT_EQ(gru.parameter("weight_ih_l1").shape(), (Shape{12, 8}));
  LSTM lstm({.input_size = 3, .hidden_size = 4}, rng);
  EXPECT_EQ(lstm.parameter("weight_hh_l0").shape(), (Shape{16, 4}));
}

TEST(Rnn, GruAndLstmGradcheckBidirectionalWithLengths) {
  Rng rng(6);
  RnnOptions o{.input_size = 3, .hidden_size = 2, .num_layers = 2, .bidirectional = true};
  GRU gru(o, rng);
  gru.to(DType::f64);
  Var x = leaf({2, 4, 3}, rng), h0 = leaf({4, 2, 2}, rng);
  Tensor len = Tensor::from_vector_i32({4, 2}, {2});
  expect_gradcheck([&] { auto r = gru.forward(x, h0, len); return ag::concat({ag::reshape(r.output, {-1}), ag::reshape(r.h_n, {-1})}, 0); },
                   with(gru.parameters(), {x, h0}));
  LSTM lstm({.input_size = 3, .hidden_size = 2, .num_layers = 1, .batch_first = false, .bidirectional = true}, rng);
  lstm.to(DType::f64);
  Var c0 = leaf({2, 4, 2}, rng), hl = leaf({2, 4, 2}, rng), xt = leaf({3, 4, 3}, rng);
  Tensor len4 = Tensor::from_vector_i32({3, 1, 2, 3}, {4});
  expect_gradcheck(
      [&] {
        auto r = lstm.forward(xt, hl, c0, len4);
        return ag::concat({ag::reshape(r.output, {-1}), ag::reshape(r.h_n, {-1}), ag::reshape(r.c_n, {-1})}, 0);
      },
      with(lstm.parameters(), {xt, hl, c0}));
}

// A padded sequence gives the same outputs and final state as the sequence run alone,
// in both directions, and zero outputs at padded steps.
TEST(Rnn, PaddedStepsDoNotChangeState) {
  for (bool is_lstm : {false, true}) {
    Rng rng(7);
    RnnOptions o{.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true};
    std::unique_ptr<RnnBase> m;
    if (is_lstm) m = std::make_unique<LSTM>(o, rng);
    else m = std::make_unique<GRU>(o, rng);
    Tensor xs = ag::random_tensor({2, 5, 3}, rng, -1, 1, DType::f32);
    Tensor len = Tensor::from_vector_i32({5, 3}, {2});
    RnnOutput full = m->forward(Var(xs), Var(), Var(), len);
    RnnOutput alone = m->forward(Var(xs.slice(0, 1, 2).slice(1, 0, 3).contiguous()));
    ASSERT_EQ(full.output.shape(), (Shape{2, 5, 8}));
    ASSERT_EQ(full.h_n.shape(), (Shape{4, 2, 4}));
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t j = 0; j < 8; ++j)
        EXPECT_NEAR(full.output.value().get({1, t, j}), alone.output.value().get({0, t, j}), 1e-6);
    for (int64_t t = 3; t < 5; ++t)
      for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(full.output.value().get({1, t, j}), 0.f);
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t j = 0; j < 4; ++j) {
        EXPECT_NEAR(full.h_n.value().get({k, 1, j}), alone.h_n.value().get({k, 0, j}), 1e-6);
        if (is_lstm) {
          EXPECT_NEAR(full.c_n.value().get({k, 1, j}), alone.c_n.value().get({k, 0, j}), 1e-6);
        }
      }
  }
}

TEST(Rnn, LayerEqualsCellsStepByStep) {
  // One-layer unidirectional GRU = the composed cell applied step by step.
  Rng rng(8);
  GRU gru({.input_size = 3, .hidden_size = 4}, rng);
  Tensor xs = ag::random_tensor({2, 3, 3}, rng, -1, 1, DType::f32);
  RnnOutput r = gru.forward(Var(xs));
  Var h(Tensor::zeros({2, 4}));
  for (int64_t t = 0; t < 3; ++t) {
    Var xt(xs.slice(1, t, t + 1).contiguous().view({2, 3}));
    auto gi = ag::split(ag::linear(xt, gru.parameter("weight_ih_l0"), gru.parameter("bias_ih_l0")), 1, {4, 4, 4});
    auto gh = ag::split(ag::linear(h, gru.parameter("weight_hh_l0"), gru.parameter("bias_hh_l0")), 1, {4, 4, 4});
    Var rr = ag::sigmoid(gi[0] + gh[0]), z = ag::sigmoid(gi[1] + gh[1]), n = ag::tanh(gi[2] + rr * gh[2]);
    h = ag::rsub(1.0, z) * n + z * h;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t j = 0; j < 4; ++j) EXPECT_NEAR(r.output.value().get({b, t, j}), h.value().get({b, j}), 1e-6);
  }
  EXPECT_THROW(gru.forward(Var(Tensor::zeros({2, 3, 5}))), Error);
}

TEST(Rnn, DropoutBetweenLayersOnlyInTraining) {
  Rng rng(9);
  LSTM lstm({.input_size = 3, .hidden_size = 4, .num_layers = 2, .dropout = 0.5}, rng);
  Var x(ag::random_tensor({2, 3, 3}, rng, -1, 1, DType::f32));
  auto a = lstm.forward(x).output.value().to_vector(), b = lstm.forward(x).output.value().to_vector();
  EXPECT_NE(a, b);
  lstm.eval();
  EXPECT_EQ(lstm.forward(x).output.value().to_vector(), lstm.forward(x).output.value().to_vector());
}

// A few plain SGD steps written inline reduce the loss of a small GRU classifier.
TEST(EndToEnd, SgdReducesLoss) {
  Rng rng(10);
  Embedding emb(10, 8, rng, 0);
  GRU gru({.input_size = 8, .hidden_size = 16}, rng);
  Linear head(16, 3, rng);
  std::vector<Var> params = with(with(emb.parameters(), gru.parameters()), head.parameters());
  Tensor ids = Tensor::from_vector_i32({1, 2, 3, 0, 4, 5, 6, 7, 8, 9, 0, 0, 2, 4, 6, 8}, {4, 4});
  Tensor len = Tensor::from_vector_i32({3, 4, 2, 4}, {4});
  Tensor target = Tensor::from_vector_i32({0, 1, 2, 1}, {4});
  auto loss_fn = [&] {
    auto r = gru.forward(emb.forward(ids), Var(), len);
    return ag::cross_entropy(head.forward(ag::reshape(r.h_n, {4, 16})), target);
  };
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    for (Var& p : params) p.zero_grad();
    Var loss = loss_fn();
    if (step == 0) first = loss.value().get({});
    last = loss.value().get({});
    loss.backward();
    for (Var& p : params) {
      float* w = p.mutable_value().data<float>();
      const float* g = p.grad().data<float>();
      for (int64_t i = 0; i < p.numel(); ++i) w[i] -= 0.5f * g[i];
    }
  }
  EXPECT_LT(last, 0.5f * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace attn::nn
