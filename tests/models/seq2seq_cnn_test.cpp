// Seq2SeqRNN with the convolutional encoder (encoder = "cnn"): parameter names, padding
// invisibility (a padded batch equals each example encoded alone), gradients of the loss by
// central differences (f64), config JSON round trip and errors, learning a toy reversal task
// with the trainer, greedy and beam decoding with alignments over the real source positions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "attn/autograd/gradcheck.h"
#include "attn/autograd/ops.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/io/checkpoint.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"
#include "common/toy_tasks.h"

namespace attn::models {
namespace {

using ag::Var;

Seq2SeqRNNConfig tiny_cnn_config(AttentionKind kind = AttentionKind::bahdanau) {
  Seq2SeqRNNConfig c;
  c.encoder = EncoderKind::cnn;
  c.src_vocab = 7;
  c.tgt_vocab = 6;
  c.embed_dim = 3;
  c.hidden_dim = 2;  // 4 channels
  c.decoder_dim = kind == AttentionKind::luong_dot ? 4 : 3;
  c.attn_dim = 3;
  c.conv_layers = 2;
  c.conv_kernel = 3;
  c.attention = kind;
  return c;
}

// Two sources (lengths 4 and 2, the second padded) and targets of length 3 and 2.
struct TinyBatch {
  Tensor src = Tensor::from_vector_i32({4, 5, 6, 3, 6, 4, 0, 0}, {2, 4});
  Tensor src_lengths = Tensor::from_vector_i32({4, 2}, {2});
  Tensor tgt_in = Tensor::from_vector_i32({1, 3, 4, 5, 1, 5, 3, 0}, {2, 4});
  Tensor tgt_out = Tensor::from_vector_i32({3, 4, 5, 2, 5, 3, 2, 0}, {2, 4});
};

Var loss_of(Seq2SeqRNN& model, const TinyBatch& b) {
  Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  const int64_t B = out.logits.size(0), T = out.logits.size(1), V = out.logits.size(2);
  return ag::cross_entropy(ag::reshape(out.logits, {B * T, V}), b.tgt_out.reshape({B * T}), 0, 0.1);
}

std::vector<std::string> names(const nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.name);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(Seq2SeqCNN, ParameterNamesAndShapes) {
  Rng rng(1, 0);
  Seq2SeqRNN cnn(tiny_cnn_config(), rng);
  auto n = names(cnn);
  for (const char* want : {"encoder.in_proj.weight", "encoder.in_proj.bias", "encoder.convs.0.weight",
                           "encoder.convs.0.bias", "encoder.convs.1.weight", "encoder.convs.1.bias", "bridge.weight"})
    EXPECT_TRUE(has(n, want)) << want;
  EXPECT_FALSE(has(n, "encoder.convs.2.weight"));
  EXPECT_FALSE(has(n, "encoder.weight_ih_l0"));
  EXPECT_EQ(cnn.parameter("encoder.convs.1.weight").shape(), (Shape{8, 4, 3}));  // [2C, C, K], C = 2H
  EXPECT_EQ(cnn.parameter("encoder.in_proj.weight").shape(), (Shape{4, 3}));
  EXPECT_EQ(cnn.encoder, nullptr);
  // The RNN encoder keeps its torch.nn.GRU names (existing checkpoints load).
  Seq2SeqRNNConfig rc = tiny_cnn_config();
  rc.encoder = EncoderKind::rnn;
  Seq2SeqRNN rnn(rc, rng);
  auto rn = names(rnn);
  EXPECT_TRUE(has(rn, "encoder.weight_ih_l0"));
  EXPECT_TRUE(has(rn, "encoder.weight_hh_l0_reverse"));
  EXPECT_FALSE(has(rn, "encoder.in_proj.weight"));
  EXPECT_EQ(rnn.conv_encoder, nullptr);
}

TEST(Seq2SeqCNN, LossGradientMatchesCentralDifferences) {
  for (AttentionKind kind : {AttentionKind::bahdanau, AttentionKind::luong_general}) {
    Rng rng(7, 0);
    Seq2SeqRNN model(tiny_cnn_config(kind), rng);
    model.to(DType::f64);
    TinyBatch b;
    // The parameters the CNN path adds or feeds (the decoder's are checked by the RNN tests).
    std::vector<Var> leaves;
    for (const NamedParam& p : model.named_parameters())
      if (p.name.rfind("encoder.", 0) == 0 || p.name.rfind("src_embed.", 0) == 0 || p.name.rfind("bridge.", 0) == 0)
        leaves.push_back(model.parameter(p.name));
    ASSERT_EQ(leaves.size(), 9u);  // src_embed; in_proj, convs.0, convs.1, bridge: weight + bias each
    ag::GradcheckResult r = ag::gradcheck([&] { return loss_of(model, b); }, leaves);
    EXPECT_GT(r.checked, 200);
    EXPECT_TRUE(r.ok) << attention_name(kind) << "\n" << r.report;
    EXPECT_LT(r.max_abs_err, 1e-6);
  }
}

// Padded positions get weight exactly 0, and neither the padding's token ids nor the amount
// of padding change the shorter example's outputs: the batch equals each example alone.
// Three layers of width 5 see 6 positions to each side, past the end of the short example.
TEST(Seq2SeqCNN, PaddedBatchEqualsUnpaddedExamples) {
  Seq2SeqRNNConfig c = tiny_cnn_config();
  c.conv_layers = 3;
  c.conv_kernel = 5;
  Rng rng(5, 0);
  Seq2SeqRNN model(c, rng);
  model.to(DType::f64);
  model.eval();
  TinyBatch b;
  Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
  ASSERT_EQ(out.logits.shape(), (Shape{2, 4, 6}));
  ASSERT_EQ(out.attention.shape(), (Shape{2, 4, 4}));
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t j = 2; j < 4; ++j) EXPECT_EQ(out.attention.get({1, t, j}), 0.0f) << "step " << t << " pos " << j;
  // Garbage in the padding and two more padded columns.
  Tensor src2 = Tensor::from_vector_i32({4, 5, 6, 3, 1, 2, 6, 4, 5, 5, 3, 3}, {2, 6});
  Seq2SeqOutput out2 = model.forward(src2, b.src_lengths, b.tgt_in);
  ASSERT_EQ(out2.logits.shape(), out.logits.shape());
  // Each example alone, unpadded.
  Seq2SeqOutput a0 = model.forward(Tensor::from_vector_i32({4, 5, 6, 3}, {1, 4}), Tensor::from_vector_i32({4}, {1}),
                                   Tensor::from_vector_i32({1, 3, 4, 5}, {1, 4}));
  Seq2SeqOutput a1 = model.forward(Tensor::from_vector_i32({6, 4}, {1, 2}), Tensor::from_vector_i32({2}, {1}),
                                   Tensor::from_vector_i32({1, 5, 3, 0}, {1, 4}));
  ASSERT_EQ(a0.logits.shape(), (Shape{1, 4, 6}));
  ASSERT_EQ(a1.logits.shape(), (Shape{1, 4, 6}));
  const double* l = out.logits.value().data<double>();
  const double* l2 = out2.logits.value().data<double>();
  for (int64_t k = 0; k < 4 * 6; ++k) {
    EXPECT_NEAR(a0.logits.value().data<double>()[k], l[k], 1e-12) << k;
    EXPECT_NEAR(a1.logits.value().data<double>()[k], l[4 * 6 + k], 1e-12) << k;
    EXPECT_NEAR(l2[4 * 6 + k], l[4 * 6 + k], 1e-12) << k;
  }
  // The encoder states agree too (and are zero at padding); the summary is their mean.
  RnnEncoding e = model.encode(src2, b.src_lengths);
  RnnEncoding e1 = model.encode(Tensor::from_vector_i32({6, 4}, {1, 2}), Tensor::from_vector_i32({2}, {1}));
  ASSERT_EQ(e.memory.values.shape(), (Shape{2, 6, 4}));
  ASSERT_EQ(e.summary.shape(), (Shape{2, 4}));
  for (int64_t d = 0; d < 4; ++d) {
    double mean = 0;
    for (int64_t j = 0; j < 2; ++j) {
      const double v = e.memory.values.value().data<double>()[(6 + j) * 4 + d];
      EXPECT_NEAR(v, e1.memory.values.value().data<double>()[j * 4 + d], 1e-12);
      mean += v / 2;
    }
    for (int64_t j = 2; j < 6; ++j) EXPECT_EQ(e.memory.values.value().data<double>()[(6 + j) * 4 + d], 0.0);
    EXPECT_NEAR(e.summary.value().data<double>()[4 + d], mean, 1e-12);
  }
}

// Dropout on the conv inputs is active in training only, and a function of the step.
TEST(Seq2SeqCNN, DropoutOnlyInTrainingAndReplayable) {
  Seq2SeqRNNConfig c = tiny_cnn_config();
  c.dropout = 0.3;
  Rng rng(9, 0);
  Seq2SeqRNN model(c, rng);
  TinyBatch b;
  model.eval();
  const auto ev1 = model.encode(b.src, b.src_lengths).memory.values.value().to_vector();
  const auto ev2 = model.encode(b.src, b.src_lengths).memory.values.value().to_vector();
  EXPECT_EQ(ev1, ev2);
  model.train();
  model.begin_step(3);
  const auto tr1 = model.encode(b.src, b.src_lengths).memory.values.value().to_vector();
  model.begin_step(3);
  const auto tr2 = model.encode(b.src, b.src_lengths).memory.values.value().to_vector();
  EXPECT_EQ(tr1, tr2);
  EXPECT_NE(tr1, ev1);
}

TEST(Seq2SeqCNNConfig, JsonRoundTripDefaultsAndErrors) {
  Seq2SeqRNNConfig c = tiny_cnn_config();
  c.conv_layers = 6;
  c.conv_kernel = 7;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(j.at("encoder"), "cnn");
  EXPECT_EQ(j.at("conv_layers"), 6);
  EXPECT_EQ(j.at("conv_kernel"), 7);
  Seq2SeqRNNConfig d = Seq2SeqRNNConfig::from_json(j);
  EXPECT_EQ(d.encoder, EncoderKind::cnn);
  EXPECT_EQ(d.conv_layers, 6);
  EXPECT_EQ(d.conv_kernel, 7);
  EXPECT_EQ(d.to_json(), j);
  // A config written before the CNN option (no "encoder" key) is an RNN.
  j.erase("encoder");
  j.erase("conv_layers");
  j.erase("conv_kernel");
  Seq2SeqRNNConfig old = Seq2SeqRNNConfig::from_json(j);
  EXPECT_EQ(old.encoder, EncoderKind::rnn);
  EXPECT_EQ(old.conv_layers, 4);
  EXPECT_EQ(old.conv_kernel, 5);
  auto error_of = [](nlohmann::json bad) {
    try {
      Seq2SeqRNNConfig::from_json(bad);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  nlohmann::json bad = c.to_json();
  bad["encoder"] = "transformer";
  EXPECT_NE(error_of(bad).find("encoder 'transformer'"), std::string::npos) << error_of(bad);
  bad = c.to_json();
  bad["conv_kernel"] = 4;
  EXPECT_NE(error_of(bad).find("conv_kernel 4"), std::string::npos) << error_of(bad);
  bad["conv_kernel"] = -3;
  EXPECT_NE(error_of(bad).find("conv_kernel -3"), std::string::npos) << error_of(bad);
  bad = c.to_json();
  bad["conv_layers"] = 0;
  EXPECT_NE(error_of(bad).find("conv_layers 0"), std::string::npos) << error_of(bad);
  bad = c.to_json();
  bad["encoder"] = 3;  // not a string
  EXPECT_NE(error_of(bad).find("Seq2SeqRNNConfig"), std::string::npos) << error_of(bad);
}

TEST(Seq2SeqCNN, BadInputsThrow) {
  Rng rng(3, 0);
  Seq2SeqRNN model(tiny_cnn_config(), rng);
  TinyBatch b;
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({4, 2, 1}, {3}), b.tgt_in), Error);
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({5, 2}, {2}), b.tgt_in), Error);  // length > S
  EXPECT_THROW(model.forward(b.src, Tensor::from_vector_i32({4, 0}, {2}), b.tgt_in), Error);  // empty source
}

// ---- training and decoding on a toy reversal task

using testing::reversal_data;

using testing::eval_set;

using testing::greedy_fn;

Seq2SeqRNNConfig toy_cnn_config() {
  Seq2SeqRNNConfig c;
  c.encoder = EncoderKind::cnn;
  c.src_vocab = 9;
  c.tgt_vocab = 9;
  c.embed_dim = 12;
  c.hidden_dim = 16;
  c.decoder_dim = 32;
  c.attn_dim = 16;
  c.conv_layers = 2;
  c.conv_kernel = 5;  // two layers see 4 steps to each side: a whole toy source
  return c;
}

// One test for training, checkpoint reload and decoding: the trained model is what makes the
// decoding checks meaningful (a confident, correct greedy output; beam search agreeing with it).
TEST(Seq2SeqCNN, LearnsToReverseAndDecodesWithAlignments) {
  const auto train_data = reversal_data(512, 1), dev = reversal_data(64, 2);
  Rng init(3, 0);
  Seq2SeqRNN model(toy_cnn_config(), init);
  train::TrainOptions o;
  o.quiet = true;
  o.handle_signals = false;
  o.batch_size = 16;
  o.lr = 1e-2;
  o.warmup_steps = 20;
  o.label_smoothing = 0.0;
  o.eval_every = 100;
  o.max_steps = 400;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("attn_cnn_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  o.checkpoint_dir = dir.string();  // reaches 100% held-out for each init seed 3..8 tried (0.81-1.0 at 300 steps)
  train::TrainResult r = train::train_seq2seq(model, train_data, eval_set(dev), greedy_fn(model), o);
  EXPECT_EQ(r.steps, 400);
  EXPECT_GE(r.last.accuracy, 0.95) << "held-out exact match after 400 steps";

  // The checkpoint rebuilds the same model: config from its metadata, parameters by name.
  const std::string last = (dir / "last.safetensors").string();
  nlohmann::json meta = io::read_checkpoint_metadata(last);
  EXPECT_EQ(meta.at("model").at("encoder"), "cnn");
  Rng other(99, 0);
  Seq2SeqRNN loaded(Seq2SeqRNNConfig::from_json(meta.at("model")), other);
  NamedParams params = loaded.named_parameters();
  io::load_checkpoint(last, params, nullptr, nullptr, nullptr);
  std::filesystem::remove_all(dir);
  model.eval();
  loaded.eval();
  {
    data::Batch db = data::collate(dev, {0, 1, 2, 3, 4, 5});
    Seq2SeqOutput a = model.forward(db.src, db.src_lengths, db.tgt_in);
    Seq2SeqOutput c = loaded.forward(db.src, db.src_lengths, db.tgt_in);
    ASSERT_EQ(a.logits.shape(), c.logits.shape());
    EXPECT_EQ(a.logits.value().to_vector(), c.logits.value().to_vector());
    EXPECT_EQ(a.attention.to_vector(), c.attention.to_vector());
  }

  // Greedy and beam search over a padded batch of held-out sources.
  std::vector<std::vector<int32_t>> srcs = {dev[0].src, dev[1].src, dev[2].src, dev[3].src};
  data::Batch b = data::collate_sources(srcs);
  decode::RnnStepDecoder dec(model);
  decode::SearchOptions so;
  so.max_length = 8;
  std::vector<decode::Hypothesis> greedy = decode::greedy_search(dec, b.src, b.src_lengths, so);
  decode::BeamOptions bo;
  bo.max_length = 8;
  bo.beam_width = 3;
  bo.n_best = 2;
  std::vector<std::vector<decode::Hypothesis>> beams = decode::beam_search(dec, b.src, b.src_lengths, bo);
  ASSERT_EQ(greedy.size(), srcs.size());
  ASSERT_EQ(beams.size(), srcs.size());
  int correct = 0;
  for (size_t i = 0; i < srcs.size(); ++i) {
    const int64_t len = static_cast<int64_t>(srcs[i].size());
    correct += greedy[i].tokens == dev[i].tgt;
    ASSERT_EQ(beams[i].size(), 2u);
    EXPECT_GE(beams[i][0].score, beams[i][1].score);
    EXPECT_GE(beams[i][0].log_prob, greedy[i].log_prob - 1e-4);  // beam finds at least greedy's
    std::vector<const decode::Hypothesis*> hyps = {&greedy[i], &beams[i][0], &beams[i][1]};
    for (const decode::Hypothesis* h : hyps) {
      ASSERT_TRUE(h->alignment.defined());
      const int64_t steps = static_cast<int64_t>(h->tokens.size()) + (h->finished ? 1 : 0);
      ASSERT_EQ(h->alignment.shape(), (Shape{steps, len}));
      for (int64_t t = 0; t < steps; ++t) {
        double s = 0;
        for (int64_t j = 0; j < len; ++j) {
          EXPECT_GE(h->alignment.get({t, j}), 0.0f);
          s += h->alignment.get({t, j});
        }
        EXPECT_NEAR(s, 1.0, 1e-5) << "source " << i << " step " << t;
      }
    }
  }
  EXPECT_GE(correct, 3);
}

}  // namespace
}  // namespace attn::models
