// TransformerSeq2Seq: torch's parameter names, shapes, padding invariance (key lengths and
// key padding masks), gradient check in double precision.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../autograd/test_util.h"
#include "attn/autograd/ops.h"
#include "attn/core/error.h"
#include "attn/models/transformer_seq2seq.h"

namespace attn::models {
namespace {

using ag::testing::expect_close;
using ag::testing::expect_gradcheck;

TransformerSeq2SeqOptions tiny(int64_t enc = 2, int64_t dec = 1, bool norm_first = true) {
  TransformerSeq2SeqOptions o;
  o.src_vocab = 7;
  o.tgt_vocab = 9;
  o.d_model = 8;
  o.nhead = 2;
  o.num_encoder_layers = enc;
  o.num_decoder_layers = dec;
  o.dim_feedforward = 16;
  o.dropout = 0.1;
  o.norm_first = norm_first;
  o.max_len = 256;
  return o;
}

Tensor ids(const std::vector<int32_t>& v, int64_t B, int64_t N) { return Tensor::from_vector_i32(v, {B, N}); }

// Written once by /usr/bin/python3 (torch 1.13) from /work/shared/peers/torch_g2p.py:
//   [k for k, _ in G2PTransformer(7, 9, d=8, heads=2, enc=2, dec=1, ffn=16).named_parameters()]
// and its one buffer: pe.pe (256, 8).
const std::vector<std::string> kTorchNames = {
      "src_emb.weight",
      "tgt_emb.weight",
      "tf.encoder.layers.0.self_attn.in_proj_weight",
      "tf.encoder.layers.0.self_attn.in_proj_bias",
      "tf.encoder.layers.0.self_attn.out_proj.weight",
      "tf.encoder.layers.0.self_attn.out_proj.bias",
      "tf.encoder.layers.0.linear1.weight",
      "tf.encoder.layers.0.linear1.bias",
      "tf.encoder.layers.0.linear2.weight",
      "tf.encoder.layers.0.linear2.bias",
      "tf.encoder.layers.0.norm1.weight",
      "tf.encoder.layers.0.norm1.bias",
      "tf.encoder.layers.0.norm2.weight",
      "tf.encoder.layers.0.norm2.bias",
      "tf.encoder.layers.1.self_attn.in_proj_weight",
      "tf.encoder.layers.1.self_attn.in_proj_bias",
      "tf.encoder.layers.1.self_attn.out_proj.weight",
      "tf.encoder.layers.1.self_attn.out_proj.bias",
      "tf.encoder.layers.1.linear1.weight",
      "tf.encoder.layers.1.linear1.bias",
      "tf.encoder.layers.1.linear2.weight",
      "tf.encoder.layers.1.linear2.bias",
      "tf.encoder.layers.1.norm1.weight",
      "tf.encoder.layers.1.norm1.bias",
      "tf.encoder.layers.1.norm2.weight",
      "tf.encoder.layers.1.norm2.bias",
      "tf.encoder.norm.weight",
      "tf.encoder.norm.bias",
      "tf.decoder.layers.0.self_attn.in_proj_weight",
      "tf.decoder.layers.0.self_attn.in_proj_bias",
      "tf.decoder.layers.0.self_attn.out_proj.weight",
      "tf.decoder.layers.0.self_attn.out_proj.bias",
      "tf.decoder.layers.0.multihead_attn.in_proj_weight",
      "tf.decoder.layers.0.multihead_attn.in_proj_bias",
      "tf.decoder.layers.0.multihead_attn.out_proj.weight",
      "tf.decoder.layers.0.multihead_attn.out_proj.bias",
      "tf.decoder.layers.0.linear1.weight",
      "tf.decoder.layers.0.linear1.bias",
      "tf.decoder.layers.0.linear2.weight",
      "tf.decoder.layers.0.linear2.bias",
      "tf.decoder.layers.0.norm1.weight",
      "tf.decoder.layers.0.norm1.bias",
      "tf.decoder.layers.0.norm2.weight",
      "tf.decoder.layers.0.norm2.bias",
      "tf.decoder.layers.0.norm3.weight",
      "tf.decoder.layers.0.norm3.bias",
      "tf.decoder.norm.weight",
      "tf.decoder.norm.bias",
      "out.weight",
      "out.bias"
};

TEST(TransformerSeq2Seq, ParameterNamesAndShapesFollowTorch) {
  Rng rng(1);
  TransformerSeq2Seq m(tiny(), rng);
  std::vector<std::string> got;
  for (const auto& p : m.named_parameters()) got.push_back(p.name);
  EXPECT_EQ(got, kTorchNames);
  auto buffers = m.named_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].first, "pe.pe");
  EXPECT_EQ(buffers[0].second.shape(), (Shape{256, 8}));
  EXPECT_EQ(m.parameter("tf.encoder.layers.1.self_attn.in_proj_weight").shape(), (Shape{24, 8}));
  EXPECT_EQ(m.parameter("out.weight").shape(), (Shape{9, 8}));
  // Embeddings: padding row zero, the rest ~ N(0, 1/8) (std 0.354, not torch's default 1).
  Tensor w = m.parameter("src_emb.weight").value();
  double ss = 0;
  for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(w.get({0, j}), 0.f);
  for (int64_t i = 1; i < 7; ++i)
    for (int64_t j = 0; j < 8; ++j) ss += w.get({i, j}) * w.get({i, j});
  const double sd = std::sqrt(ss / 48);
  EXPECT_GT(sd, 0.2);
  EXPECT_LT(sd, 0.55);
}

TEST(TransformerSeq2Seq, ShapesAndErrors) {
  Rng rng(2);
  TransformerSeq2Seq m(tiny(), rng);
  Var y = m.forward(ids({1, 2, 3, 4, 5, 6}, 2, 3), ids({1, 3, 1, 4}, 2, 2));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 9}));
  EncoderState enc = m.encode(ids({1, 2, 3, 4, 5, 6}, 2, 3));
  EXPECT_EQ(enc.memory.shape(), (Shape{2, 3, 8}));
  EXPECT_EQ(m.decode_step(ids({1, 3, 1, 4}, 2, 2), enc).shape(), (Shape{2, 9}));
  EXPECT_THROW(m.forward(Tensor::zeros({2, 3}), ids({1, 3}, 2, 1)), Error);             // f32 ids
  EXPECT_THROW(m.forward(ids({1, 2, 3, 4, 5, 6}, 2, 3), ids({1, 3, 1}, 3, 1)), Error);  // batch mismatch
  EXPECT_THROW(m.forward(ids({1, 2, 9, 4, 5, 6}, 2, 3), ids({1, 3}, 2, 1)), Error);     // id >= vocab
  TransformerSeq2SeqOptions bad = tiny();
  bad.nhead = 3;
  EXPECT_THROW(TransformerSeq2Seq(bad, rng), Error);
}

TEST(TransformerSeq2Seq, PaddingMasksUseKeyLengthsWhenRightPadded) {
  Rng rng(3);
  TransformerSeq2Seq m(tiny(), rng);
  nn::AttentionMasks a = m.padding_masks(ids({1, 2, 0, 3, 0, 0}, 2, 3));
  ASSERT_TRUE(a.key_lengths.defined());
  EXPECT_FALSE(a.key_padding_mask.defined());
  EXPECT_EQ(a.key_lengths.get({0}), 2.f);
  EXPECT_EQ(a.key_lengths.get({1}), 1.f);
  nn::AttentionMasks b = m.padding_masks(ids({1, 0, 2, 3, 4, 5}, 2, 3));  // interior padding
  EXPECT_FALSE(b.key_lengths.defined());
  ASSERT_TRUE(b.key_padding_mask.defined());
  EXPECT_EQ(b.key_padding_mask.get({0, 1}), 1.f);
  EXPECT_EQ(b.key_padding_mask.get({1, 1}), 0.f);
  nn::AttentionMasks c = m.padding_masks(ids({1, 2, 3, 4}, 2, 2));  // no padding: no mask at all
  EXPECT_FALSE(c.key_lengths.defined());
  EXPECT_FALSE(c.key_padding_mask.defined());
}

// Padding tokens never change the outputs at real positions: appending padding to source
// and target (key lengths), and hiding positions by a padding mask gives the same as lengths.
TEST(TransformerSeq2Seq, PaddingInvariance) {
  for (bool norm_first : {true, false}) {
    Rng rng(4);
    TransformerSeq2Seq m(tiny(2, 2, norm_first), rng);
    m.eval();
    // Row 0: src 3 tokens, tgt 2; row 1: src 2 tokens, tgt 3.
    Var y = m.forward(ids({1, 2, 3, 4, 5, 0}, 2, 3), ids({1, 3, 0, 1, 4, 5}, 2, 3));
    Var yp = m.forward(ids({1, 2, 3, 0, 0, 4, 5, 0, 0, 0}, 2, 5), ids({1, 3, 0, 0, 1, 4, 5, 0}, 2, 4));
    ASSERT_EQ(yp.shape(), (Shape{2, 4, 9}));
    expect_close(y.value().slice(1, 0, 2).select(0, 0), yp.value().slice(1, 0, 2).select(0, 0), 1e-5, 1e-5, "row 0");
    expect_close(y.value().select(0, 1), yp.value().slice(1, 0, 3).select(0, 1), 1e-5, 1e-5, "row 1");

    // Key padding mask (materialised bias) vs key lengths (fused kernel) on the encoder.
    Tensor src = ids({1, 2, 3, 4, 5, 0}, 2, 3);
    EncoderState by_len = m.encode(src);
    ASSERT_TRUE(by_len.mask.key_lengths.defined());
    nn::AttentionMasks kpm;
    kpm.key_padding_mask = ids({0, 0, 0, 0, 0, 1}, 2, 3);
    Var mem = m.tf->encoder->forward(
        ag::add(ag::mul(m.src_emb->forward(src), std::sqrt(8.0)), Var(m.pe->pe.slice(0, 0, 3).contiguous(), false)),
        kpm);
    expect_close(mem.value().select(0, 0), by_len.memory.value().select(0, 0), 1e-5, 1e-5, "memory row 0");
    expect_close(mem.value().slice(1, 0, 2).select(0, 1), by_len.memory.value().slice(1, 0, 2).select(0, 1), 1e-5,
                 1e-5, "memory row 1");
  }
}

TEST(TransformerSeq2Seq, DecodeStepIsTheLastPositionOfDecode) {
  Rng rng(5);
  TransformerSeq2Seq m(tiny(), rng);
  m.eval();
  EncoderState enc = m.encode(ids({1, 2, 3, 4, 5, 0}, 2, 3));
  Tensor tgt = ids({1, 3, 4, 1, 5, 6}, 2, 3);
  Var all = m.decode(tgt, enc);
  Var last = m.decode_step(tgt, enc);
  expect_close(last.value(), all.value().select(1, 2).contiguous(), 0, 0, "decode_step");
  // Causal: the first two positions do not see the third token.
  Var prefix = m.decode(tgt.slice(1, 0, 2).contiguous(), enc);
  expect_close(prefix.value(), all.value().slice(1, 0, 2).contiguous(), 1e-5, 1e-5, "causal prefix");
}

// Central differences in f64 through the whole model (dropout off; padding in source and
// target so the key-length masks are on the path), on a subset of the parameters.
TEST(TransformerSeq2Seq, Gradcheck) {
  for (bool norm_first : {true, false}) {
    TransformerSeq2SeqOptions o = tiny(1, 1, norm_first);
    o.dropout = 0;
    Rng rng(6);
    TransformerSeq2Seq m(o, rng);
    m.to(DType::f64);
    Tensor src = ids({1, 2, 3, 4, 5, 0}, 2, 3), tgt = ids({1, 3, 0, 1, 4, 5}, 2, 3);
    std::vector<Var> leaves = {m.parameter("src_emb.weight"),
                               m.parameter("tf.encoder.layers.0.self_attn.in_proj_weight"),
                               m.parameter("tf.encoder.norm.weight"),
                               m.parameter("tf.decoder.layers.0.self_attn.in_proj_weight"),
                               m.parameter("tf.decoder.layers.0.multihead_attn.in_proj_weight"),
                               m.parameter("tf.decoder.layers.0.linear1.weight"),
                               m.parameter("tf.decoder.norm.bias"),
                               m.parameter("out.weight")};
    expect_gradcheck([&] { return m.forward(src, tgt); }, leaves);
  }
}

// Seq2SeqModel::forward (source masks from src_lengths) equals the pad-derived forward.
TEST(TransformerSeq2Seq, Seq2SeqModelForwardEqualsForwardFromPadding) {
  for (bool norm_first : {true, false}) {
    Rng rng(21);
    TransformerSeq2Seq model(tiny(2, 2, norm_first), rng);
    model.eval();
    Seq2SeqModel& as_model = model;
    const Tensor src = ids({3, 4, 5, 6, 2, 5, 0, 0, 6, 0, 0, 0}, 3, 4);
    const Tensor len = Tensor::from_vector_i32({4, 2, 1}, {3});
    const Tensor tgt = ids({1, 3, 4, 1, 5, 0, 1, 8, 7}, 3, 3);
    Seq2SeqOutput a = as_model.forward(src, len, tgt);
    Var b = model.forward(src, tgt);
    ASSERT_EQ(a.logits.shape(), (Shape{3, 3, 9}));
    ASSERT_EQ(b.shape(), a.logits.shape());
    expect_close(a.logits.value(), b.value(), 1e-6, 1e-6, "forward(src, lengths, tgt) vs forward(src, tgt)");
    EXPECT_FALSE(a.attention.defined());
    // Without padding: key lengths = S against no mask at all.
    const Tensor full = ids({3, 4, 5, 6, 2, 5}, 2, 3);
    const Tensor tgt2 = ids({1, 3, 1, 4}, 2, 2);
    expect_close(as_model.forward(full, Tensor::from_vector_i32({3, 3}, {2}), tgt2).logits.value(),
                 model.forward(full, tgt2).value(), 1e-6, 1e-6, "unpadded");
    // A length that contradicts the source shape.
    EXPECT_THROW(as_model.forward(src, Tensor::from_vector_i32({5, 2, 1}, {3}), tgt), Error);
    EXPECT_THROW(as_model.forward(src, Tensor::from_vector_i32({4, 0, 1}, {3}), tgt), Error);
    EXPECT_THROW(as_model.forward(src, Tensor::from_vector_i32({4, 2}, {2}), tgt), Error);
  }
}

// Dropout masks are a function of (seed, step): the same step twice gives the same loss, also
// after unrelated forwards advanced every stream, and in a second model built from the same
// seed; another step gives another loss.
TEST(TransformerSeq2Seq, BeginStepMakesDropoutDependOnSeedAndStepOnly) {
  TransformerSeq2SeqOptions o = tiny(2, 2);
  o.dropout = 0.3;
  Rng r1(5), r2(5);
  TransformerSeq2Seq m1(o, r1), m2(o, r2);
  const Tensor src = ids({3, 4, 5, 6, 2, 5, 0, 0}, 2, 4);
  const Tensor len = Tensor::from_vector_i32({4, 2}, {2});
  const Tensor tgt = ids({1, 3, 4, 5, 1, 5, 6, 0}, 2, 4);
  auto loss = [&](TransformerSeq2Seq& m, int64_t step) {
    ag::NoGradGuard ng;
    m.begin_step(step);
    Var logits = m.forward(src, len, tgt).logits;
    return logits.value().to_vector();
  };
  m1.train();
  m2.train();
  const auto a = loss(m1, 5);
  loss(m1, 9);
  m1.forward(src, tgt);  // advances every stream without begin_step
  const auto b = loss(m1, 5);
  const auto c = loss(m2, 5);
  const auto d = loss(m1, 6);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_NE(a, d);
  m1.eval();
  const auto e = loss(m1, 5);
  EXPECT_NE(a, e);  // dropout was active in training
}

// Each stream alone: attention dropout only (the layers' dropouts off) still follows the step.
TEST(TransformerSeq2Seq, BeginStepResetsAttentionDropout) {
  TransformerSeq2SeqOptions o = tiny(1, 1);
  o.dropout = 0.0;
  Rng rng(8);
  TransformerSeq2Seq m(o, rng);
  for (auto* mha : {m.tf->encoder->layers[0]->self_attn.get(), m.tf->decoder->layers[0]->self_attn.get(),
                    m.tf->decoder->layers[0]->multihead_attn.get()})
    mha->opts.dropout = 0.5;
  m.train();
  const Tensor src = ids({3, 4, 5, 6}, 1, 4), tgt = ids({1, 3, 4}, 1, 3);
  auto run = [&](int64_t step) {
    m.begin_step(step);
    return m.forward(src, Tensor::from_vector_i32({4}, {1}), tgt).logits.value().to_vector();
  };
  const auto a = run(3), b = run(3), c = run(4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(TransformerSeq2SeqOptions, JsonRoundTripDefaultsAndErrors) {
  TransformerSeq2SeqOptions o = tiny(3, 2, false);
  o.activation = nn::Activation::gelu;
  o.num_kv_heads = 1;
  o.pad_id = 0;
  o.max_len = 77;
  const nlohmann::json j = o.to_json();
  EXPECT_EQ(j.at("model"), "transformer");
  EXPECT_EQ(j.at("activation"), "gelu");
  const TransformerSeq2SeqOptions r = TransformerSeq2SeqOptions::from_json(j);
  EXPECT_EQ(r.to_json(), j);
  EXPECT_EQ(r.num_encoder_layers, 3);
  EXPECT_EQ(r.num_decoder_layers, 2);
  EXPECT_FALSE(r.norm_first);
  EXPECT_EQ(r.activation, nn::Activation::gelu);
  EXPECT_EQ(r.max_len, 77);
  EXPECT_EQ(r.num_kv_heads, 1);
  EXPECT_DOUBLE_EQ(r.dropout, o.dropout);
  Rng rng(1);
  TransformerSeq2Seq model(o, rng);
  EXPECT_EQ(model.config_json(), j);
  // Missing keys keep their defaults.
  const TransformerSeq2SeqOptions d = TransformerSeq2SeqOptions::from_json({{"src_vocab", 5}, {"tgt_vocab", 6}});
  EXPECT_EQ(d.src_vocab, 5);
  EXPECT_EQ(d.d_model, TransformerSeq2SeqOptions{}.d_model);
  EXPECT_EQ(d.nhead, TransformerSeq2SeqOptions{}.nhead);
  EXPECT_TRUE(d.norm_first);
  // Errors name the field.
  auto expect_error = [&](nlohmann::json bad, const std::string& field) {
    try {
      TransformerSeq2SeqOptions::from_json(bad);
      ADD_FAILURE() << "expected attn::Error for " << bad.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json b = j;
    b[key] = v;
    return b;
  };
  expect_error(with("activation", "swish"), "activation");
  expect_error(with("model", "seq2seq_rnn"), "model");
  expect_error(with("d_model", 9), "d_model");  // not a multiple of nhead 2
  expect_error(with("d_model", "big"), "d_model");
  expect_error(with("nhead", 0), "nhead");
  expect_error(with("num_kv_heads", 3), "num_kv_heads");
  expect_error(with("dropout", 1.5), "dropout");
  expect_error(with("pad_id", 9), "pad_id");
  expect_error(with("tgt_vocab", 0), "tgt_vocab");
  expect_error(with("norm_first", "yes"), "norm_first");
  expect_error(with("max_len", -1), "max_len");
  expect_error(nlohmann::json::array({1, 2}), "TransformerSeq2SeqOptions");
}

TEST(TransformerSeq2Seq, CrossAttentionWeightsPerLayer) {
  Rng rng(4);
  TransformerSeq2Seq model(tiny(1, 2), rng);
  model.train();
  const Tensor src = ids({3, 4, 5, 6, 2, 5, 0, 0}, 2, 4), tgt = ids({1, 3, 4, 1, 5, 6}, 2, 3);
  std::vector<Tensor> w = model.cross_attention_weights(src, tgt);
  EXPECT_TRUE(model.is_training());
  ASSERT_EQ(w.size(), 2u);
  for (const Tensor& l : w) {
    ASSERT_EQ(l.shape(), (Shape{2, 2, 3, 4}));
    ASSERT_EQ(l.dtype(), DType::f32);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < 3; ++t) {
        double s0 = 0, s1 = 0;
        for (int64_t s = 0; s < 4; ++s) {
          s0 += l.get({0, h, t, s});
          s1 += l.get({1, h, t, s});
        }
        EXPECT_NEAR(s0, 1.0, 1e-5);
        EXPECT_NEAR(s1, 1.0, 1e-5);
        EXPECT_EQ(l.get({1, h, t, 2}), 0.f);  // padding
        EXPECT_EQ(l.get({1, h, t, 3}), 0.f);
      }
  }
  // Eval mode: no dropout, so twice the same.
  EXPECT_EQ(model.cross_attention_weights(src, tgt)[1].to_vector(), w[1].to_vector());
}

}  // namespace
}  // namespace attn::models
