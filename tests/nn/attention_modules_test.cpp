// MultiheadAttention, Bahdanau, Luong, Transformer layers: names, gradient checks (f64),
// values against the same computation from primitive ops, train/eval behaviour.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "attn/autograd/ops.h"
#include "attn/nn/bahdanau_attention.h"
#include "attn/nn/luong_attention.h"
#include "attn/nn/multihead_attention.h"
#include "attn/nn/transformer_layer.h"
#include "nn_util.h"

namespace attn::nn {
namespace {

using namespace testing;

TEST(MultiheadAttention, NamesAndShapes) {
  Rng rng(1);
  MultiheadAttention mha(8, 2, rng);
  EXPECT_EQ(names(mha), (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}));
  EXPECT_EQ(mha.in_proj_weight.shape(), (Shape{24, 8}));
  MultiheadAttention cross(8, 2, rng, {.kdim = 5, .vdim = 3});
  EXPECT_EQ(names(cross), (std::vector<std::string>{"q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                                                   "out_proj.weight", "out_proj.bias"}));
  EXPECT_EQ(cross.k_proj_weight.shape(), (Shape{8, 5}));
  MultiheadAttention gqa(8, 4, rng, {.num_kv_heads = 2});
  EXPECT_EQ(gqa.in_proj_weight.shape(), (Shape{16, 8}));
  for (float b : mha.in_proj_bias.value().to_vector()) EXPECT_EQ(b, 0.f);
  EXPECT_THROW(MultiheadAttention(9, 2, rng), Error);
}

// Torch's MultiheadAttention from primitive ops (self-attention, additive mask).
Var mha_composed(MultiheadAttention& m, const Var& x, const Tensor& add_mask) {
  const int64_t B = x.size(0), N = x.size(1), E = m.embed_dim, H = m.num_heads, Dh = E / H;
  auto qkv = ag::split(ag::linear(x, m.in_proj_weight, m.in_proj_bias), 2, {E, E, E});
  auto heads = [&](const Var& t) { return ag::reshape(ag::transpose(ag::reshape(t, {B, N, H, Dh}), 1, 2), {B * H, N, Dh}); };
  Var s = ag::bmm(heads(qkv[0]), heads(qkv[1]), false, true) * (1.0 / std::sqrt(double(Dh)));
  Var p = ag::softmax(ag::add(ag::reshape(s, {B, H, N, N}), Var(add_mask)), -1);
  Var o = ag::bmm(ag::reshape(p, {B * H, N, N}), heads(qkv[2]));
  o = ag::reshape(ag::transpose(ag::reshape(o, {B, H, N, Dh}), 1, 2), {B, N, E});
  return m.out_proj->forward(o);
}

TEST(MultiheadAttention, SelfAttentionEqualsComposedWithMasks) {
  Rng rng(2);
  MultiheadAttention mha(8, 2, rng);
  for (Var& p : mha.parameters()) {  // non-zero biases so that they are exercised
    Tensor& t = p.mutable_value();
    Tensor r = ag::random_tensor(t.shape(), rng, -0.5, 0.5, DType::f32);
    t.copy_from(r);
  }
  Var x(ag::random_tensor({2, 4, 8}, rng, -1, 1, DType::f32), true);
  AttentionMasks m;
  m.key_padding_mask = Tensor::from_vector_i32({0, 0, 0, 0, 0, 0, 1, 1}, {2, 4});
  m.is_causal = true;
  MhaOutput r = mha.forward(x, x, x, m, true, false);
  ASSERT_EQ(r.out.shape(), (Shape{2, 4, 8}));
  ASSERT_EQ(r.weights.shape(), (Shape{2, 2, 4, 4}));
  Tensor add_mask = Tensor::zeros({2, 1, 4, 4});
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 4; ++j)
        if (j > i || (b == 1 && j >= 2)) add_mask.set({b, 0, i, j}, -std::numeric_limits<float>::infinity());
  Var y = mha_composed(mha, x, add_mask);
  expect_close(r.out.value(), y.value(), 1e-5, 1e-5, "mha out");
  // Gradients of inputs and parameters agree too.
  Rng rs(3);
  Tensor seed = ag::random_tensor({2, 4, 8}, rs, -1, 1, DType::f32);
  r.out.backward(seed);
  auto g1 = mha.named_parameters();
  std::vector<Tensor> saved;
  for (auto& p : g1) saved.push_back(p.grad.clone());
  Tensor dx1 = x.grad().clone();
  mha.zero_grad();
  x.zero_grad();
  mha_composed(mha, x, add_mask).backward(seed);
  expect_close(dx1, x.grad(), 1e-5, 1e-5, "dx");
  auto g2 = mha.named_parameters();
  for (size_t i = 0; i < g2.size(); ++i) expect_close(saved[i], g2[i].grad, 1e-5, 1e-5, g2[i].name);
  // Averaged weights = mean over heads.
  MhaOutput avg = mha.forward(x, x, x, m, true, true);
  ASSERT_EQ(avg.weights.shape(), (Shape{2, 4, 4}));
  EXPECT_NEAR(avg.weights.get({1, 3, 1}), 0.5f * (r.weights.get({1, 0, 3, 1}) + r.weights.get({1, 1, 3, 1})), 1e-6);
  EXPECT_EQ(avg.weights.get({1, 3, 2}), 0.f);
}

TEST(MultiheadAttention, GradcheckSelfCrossAndGrouped) {
  Rng rng(4);
  MultiheadAttention self(4, 2, rng);
  self.to(DType::f64);
  Var x = leaf({2, 3, 4}, rng);
  AttentionMasks m;
  m.attn_mask = Tensor::from_vector({0.f, -1.f, 0.5f, 0.f, 0.f, -2.f, 1.f, 0.f, 0.f}, {3, 3});
  m.key_lengths = Tensor::from_vector_i32({3, 2}, {2});
  expect_gradcheck([&] { return self.forward(x, x, x, m).out; }, with(self.parameters(), {x}));

  MultiheadAttention cross(4, 2, rng, {.kdim = 3, .vdim = 5});
  cross.to(DType::f64);
  Var kk = leaf({2, 4, 3}, rng), vv = leaf({2, 4, 5}, rng);
  expect_gradcheck([&] { return cross.forward(x, kk, vv).out; }, with(cross.parameters(), {x, kk, vv}));

  MultiheadAttention gqa(4, 4, rng, {.num_kv_heads = 2, .batch_first = false});
  gqa.to(DType::f64);
  Var mem = leaf({5, 2, 4}, rng), xt = leaf({3, 2, 4}, rng);
  expect_gradcheck([&] { return gqa.forward(xt, mem, mem, {.is_causal = false}).out; }, with(gqa.parameters(), {xt, mem}));
  EXPECT_EQ(gqa.forward(xt, mem, mem).out.shape(), (Shape{3, 2, 4}));
}

TEST(MultiheadAttention, DropoutOnlyInTraining) {
  Rng rng(5);
  MultiheadAttention mha(8, 2, rng, {.dropout = 0.5});
  Var x(ag::random_tensor({2, 4, 8}, rng, -1, 1, DType::f32));
  EXPECT_NE(mha.forward(x, x, x).out.value().to_vector(), mha.forward(x, x, x).out.value().to_vector());
  mha.eval();
  EXPECT_EQ(mha.forward(x, x, x).out.value().to_vector(), mha.forward(x, x, x).out.value().to_vector());
}

TEST(RnnAttention, BahdanauNamesValuesAndGradcheck) {
  Rng rng(6);
  BahdanauAttention att(3, 4, 5, rng);
  EXPECT_EQ(names(att), (std::vector<std::string>{"Wa.weight", "Ua.weight", "Va.weight"}));
  // Value by the formula: e_j = va · tanh(Wa s + Ua h_j), softmax, weighted sum.
  Var s(ag::random_tensor({2, 3}, rng, -1, 1, DType::f32)), h(ag::random_tensor({2, 6, 4}, rng, -1, 1, DType::f32));
  Tensor len = Tensor::from_vector_i32({6, 4}, {2});
  AttentionContext c = att.forward(s, h, Var(), len);
  ASSERT_EQ(c.context.shape(), (Shape{2, 4}));
  ASSERT_EQ(c.weights.shape(), (Shape{2, 6}));
  Var e = ag::reshape(ag::linear(ag::tanh(ag::add(ag::reshape(ag::linear(s, att.Wa->weight), {2, 1, 5}),
                                                  ag::linear(h, att.Ua->weight))),
                                 att.Va->weight),
                      {2, 6});
  Tensor mask = Tensor::zeros({2, 6});
  mask.set({1, 4}, -INFINITY);
  mask.set({1, 5}, -INFINITY);
  Var a = ag::softmax(ag::add(e, Var(mask)), -1);
  Var ctx = ag::reshape(ag::matmul(ag::reshape(a, {2, 1, 6}), h), {2, 4});
  expect_close(c.weights, a.value(), 1e-5, 1e-5, "weights");
  expect_close(c.context.value(), ctx.value(), 1e-5, 1e-5, "context");
  att.to(DType::f64);
  Var q = leaf({2, 2, 3}, rng), k = leaf({2, 3, 4}, rng), v = leaf({2, 3, 2}, rng);
  expect_gradcheck([&] { return att.forward(q, k, v, len.slice(0, 0, 2).clone().view({2})).context; },
                   with(att.parameters(), {q, k, v}));
}

TEST(RnnAttention, LuongScoresGradcheck) {
  Rng rng(7);
  LuongAttention dot(LuongScore::dot, 4, 4, rng), general(LuongScore::general, 3, 4, rng),
      concat(LuongScore::concat, 3, 4, rng, 5);
  EXPECT_TRUE(names(dot).empty());
  EXPECT_EQ(names(general), (std::vector<std::string>{"attn.weight"}));
  EXPECT_EQ(general.attn->weight.shape(), (Shape{3, 4}));
  EXPECT_EQ(names(concat), (std::vector<std::string>{"attn.weight", "v.weight"}));
  EXPECT_EQ(concat.attn->weight.shape(), (Shape{5, 7}));
  for (LuongAttention* m : {&dot, &general, &concat}) m->to(DType::f64);
  Var q4 = leaf({2, 4}, rng), q3 = leaf({2, 2, 3}, rng), k = leaf({2, 5, 4}, rng);
  expect_gradcheck([&] { return dot.forward(q4, k).context; }, {q4, k});
  expect_gradcheck([&] { return general.forward(q3, k).context; }, with(general.parameters(), {q3, k}));
  expect_gradcheck([&] { return concat.forward(q3, k).context; }, with(concat.parameters(), {q3, k}));
  // general: score = qᵀ W k
  AttentionContext c = general.forward(q3, k);
  double s00 = 0;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j)
      s00 += q3.value().data<double>()[i] * general.attn->weight.value().data<double>()[i * 4 + j] * k.value().data<double>()[j];
  double z = 0;
  for (int64_t n = 0; n < 5; ++n) {
    double s = 0;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j)
        s += q3.value().data<double>()[i] * general.attn->weight.value().data<double>()[i * 4 + j] *
             k.value().data<double>()[n * 4 + j];
    z += std::exp(s);
  }
  EXPECT_NEAR(c.weights.get({0, 0, 0}), std::exp(s00) / z, 1e-6);
  EXPECT_THROW(LuongAttention(LuongScore::dot, 3, 4, rng), Error);
}

TEST(Transformer, NamesFollowTorch) {
  Rng rng(8);
  TransformerEncoderLayer enc({.d_model = 8, .nhead = 2, .dim_feedforward = 16}, rng);
  EXPECT_EQ(names(enc), (std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                                 "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                                 "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                                                 "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}));
  TransformerDecoderLayer dec({.d_model = 8, .nhead = 2, .dim_feedforward = 16}, rng);
  auto n = names(dec);
  EXPECT_EQ(n.size(), 18u);
  EXPECT_EQ(n[4], "multihead_attn.in_proj_weight");
  EXPECT_EQ(n.back(), "norm3.bias");
}

TEST(Transformer, GradcheckPreAndPostNormReluGelu) {
  for (bool norm_first : {false, true}) {
    Rng rng(9);
    TransformerLayerOptions o{.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0,
                              .activation = norm_first ? Activation::gelu : Activation::relu, .norm_first = norm_first};
    TransformerEncoderLayer enc(o, rng);
    TransformerDecoderLayer dec(o, rng);
    enc.to(DType::f64);
    dec.to(DType::f64);
    Var src = leaf({2, 3, 4}, rng), tgt = leaf({2, 2, 4}, rng);
    AttentionMasks sm{.key_lengths = Tensor::from_vector_i32({3, 2}, {2})};
    expect_gradcheck([&] { return enc.forward(src, sm); }, with(enc.parameters(), {src}));
    expect_gradcheck([&] { return dec.forward(tgt, src, {.is_causal = true}, sm); }, with(dec.parameters(), {tgt, src}));
  }
}

TEST(Transformer, EncoderLayerEqualsComposedPostNorm) {
  Rng rng(10);
  TransformerEncoderLayer enc({.d_model = 8, .nhead = 2, .dim_feedforward = 16, .dropout = 0.1}, rng);
  enc.eval();  // dropout off
  Var x(ag::random_tensor({2, 3, 8}, rng, -1, 1, DType::f32));
  Var y = enc.forward(x);
  Var sa = enc.self_attn->forward(x, x, x).out;
  Var h = ag::layer_norm(x + sa, enc.norm1->weight, enc.norm1->bias, 1e-5);
  Var ff = enc.linear2->forward(ag::relu(enc.linear1->forward(h)));
  Var ref = ag::layer_norm(h + ff, enc.norm2->weight, enc.norm2->bias, 1e-5);
  expect_close(y.value(), ref.value(), 1e-6, 1e-6, "encoder layer");
  EXPECT_EQ(enc.forward(x).value().to_vector(), y.value().to_vector());
  enc.train();
  EXPECT_NE(enc.forward(x).value().to_vector(), y.value().to_vector());
}

}  // namespace
}  // namespace attn::nn
