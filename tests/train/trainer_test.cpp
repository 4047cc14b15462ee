// The seq2seq training loop on a toy reversal task: it learns, checkpoints reload to the same
// outputs, a resumed run ends bit-identical to an uninterrupted one, SIGTERM saves and
// stops, evaluation metrics with several references, early stopping.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "attn/autograd/ops.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/io/checkpoint.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"
#include "common/toy_tasks.h"

namespace attn::train {
namespace {

namespace fs = std::filesystem;

using testing::reversal_data;

using testing::eval_set;

using testing::batch_loss;
using testing::greedy_fn;
using testing::toy_config;

TrainOptions quiet_options() {
  TrainOptions o;
  o.quiet = true;
  o.handle_signals = false;
  o.batch_size = 16;
  o.lr = 1e-2;
  o.warmup_steps = 20;
  o.label_smoothing = 0.0;
  o.eval_every = 100;
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_trainer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

TEST(Trainer, LearnsToReverseSequences) {
  const auto train = reversal_data(512, 1), dev = reversal_data(64, 2);
  Rng init(3, 0);
  models::Seq2SeqRNN model(toy_config(), init);
  const double before = batch_loss(model, dev);
  TrainOptions o = quiet_options();
  o.max_steps = 300;
  TrainResult r = train_seq2seq(model, train, eval_set(dev), greedy_fn(model), o);
  EXPECT_EQ(r.steps, 300);
  EXPECT_EQ(r.stop_reason, "max_steps");
  const double after = batch_loss(model, dev);
  EXPECT_GT(before, 2.0);  // ~ln 9 at initialisation
  EXPECT_LT(after, 0.25) << "before " << before;
  EXPECT_GT(r.last.accuracy, 0.5);
  EXPECT_EQ(r.history.size(), 3u);  // steps 100, 200, 300
}

TEST(Trainer, CheckpointReloadGivesIdenticalOutputs) {
  const auto train = reversal_data(128, 4), dev = reversal_data(16, 5);
  const fs::path dir = temp_dir("reload");
  Rng init(6, 0);
  models::Seq2SeqRNN model(toy_config(), init);
  TrainOptions o = quiet_options();
  o.max_steps = 30;
  o.eval_every = 10;
  o.checkpoint_dir = dir.string();
  o.meta = {{"note", "test"}};
  train_seq2seq(model, train, eval_set(dev), greedy_fn(model), o);
  ASSERT_TRUE(fs::exists(dir / "last.safetensors"));
  ASSERT_TRUE(fs::exists(dir / "best.safetensors"));
  nlohmann::json meta = io::read_checkpoint_metadata((dir / "last.safetensors").string());
  EXPECT_EQ(meta.at("note"), "test");
  // Rebuild from the stored config with a different init, load, compare every output.
  Rng other(99, 0);
  models::Seq2SeqRNN loaded(models::Seq2SeqRNNConfig::from_json(meta.at("model")), other);
  NamedParams params = loaded.named_parameters();
  io::TrainState st;
  io::load_checkpoint((dir / "last.safetensors").string(), params, nullptr, &st, nullptr);
  EXPECT_EQ(st.step, 30);
  model.eval();
  loaded.eval();
  data::Batch b = data::collate(dev, {0, 1, 2, 3, 4, 5});
  models::Seq2SeqOutput a = model.forward(b.src, b.src_lengths, b.tgt_in);
  models::Seq2SeqOutput c = loaded.forward(b.src, b.src_lengths, b.tgt_in);
  ASSERT_EQ(a.logits.shape(), c.logits.shape());
  EXPECT_EQ(a.logits.value().to_vector(), c.logits.value().to_vector());
  EXPECT_EQ(a.attention.to_vector(), c.attention.to_vector());
  fs::remove_all(dir);
}

// Same seed and thread count: 14 steps, stop, resume to 32 == 32 steps in one go (with
// dropout, mid-epoch stops, and epochs rolling over: 96 examples / 16 = 6 batches each).
// Two encoder layers add dropout between them (nn::RnnBase::begin_step).
class TrainerResume : public ::testing::TestWithParam<int64_t> {};

TEST_P(TrainerResume, ResumeIsBitIdenticalToAnUninterruptedRun) {
  const int64_t encoder_layers = GetParam();
  const auto train = reversal_data(96, 7), dev = reversal_data(8, 8);
  auto run = [&](const fs::path& dir, int64_t max_steps, bool resume) {
    Rng init(9, 0);
    auto model = std::make_shared<models::Seq2SeqRNN>(toy_config(0.2, encoder_layers), init);
    TrainOptions o = quiet_options();
    o.max_steps = max_steps;
    o.eval_every = 5;
    o.checkpoint_dir = dir.string();
    o.resume = resume;
    TrainResult r = train_seq2seq(*model, train, eval_set(dev), greedy_fn(*model), o);
    EXPECT_EQ(r.resumed, resume);
    EXPECT_EQ(r.steps, max_steps);
    return model;
  };
  const std::string tag = std::to_string(encoder_layers);
  const fs::path d1 = temp_dir("resume_a" + tag), d2 = temp_dir("resume_b" + tag);
  auto straight = run(d1, 32, false);
  run(d2, 14, false);
  auto resumed = run(d2, 32, true);
  NamedParams a = straight->named_parameters(), b = resumed->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    ASSERT_EQ(a[i].value.shape(), b[i].value.shape());
    EXPECT_EQ(a[i].value.to_vector(), b[i].value.to_vector()) << a[i].name;
  }
  fs::remove_all(d1);
  fs::remove_all(d2);
}

INSTANTIATE_TEST_SUITE_P(EncoderLayers, TrainerResume, ::testing::Values(1, 2));

// SIGTERM (raised while the model is being evaluated at step 10) -> the step in flight
// finishes, the last checkpoint is written at that step, the loop returns "signal" and the
// previous handler is back.
TEST(Trainer, SigtermSavesAndStops) {
  const auto train = reversal_data(64, 10), dev = reversal_data(4, 11);
  const fs::path dir = temp_dir("signal");
  Rng init(12, 0);
  models::Seq2SeqRNN model(toy_config(), init);
  TrainOptions o = quiet_options();
  o.max_steps = 100;
  o.eval_every = 10;
  o.checkpoint_dir = dir.string();
  o.handle_signals = true;
  DecodeFn inner = greedy_fn(model);
  bool raised = false;
  DecodeFn decode = [&](const std::vector<std::vector<int32_t>>& s) {
    if (!raised) {
      raised = true;
      std::raise(SIGTERM);
    }
    return inner(s);
  };
  auto previous = std::signal(SIGTERM, SIG_IGN);
  TrainResult r = train_seq2seq(model, train, eval_set(dev), decode, o);
  EXPECT_EQ(r.stop_reason, "signal");
  EXPECT_EQ(r.steps, 11);
  io::TrainState st;
  NamedParams params = model.named_parameters();
  io::load_checkpoint((dir / "last.safetensors").string(), params, nullptr, &st, nullptr);
  EXPECT_EQ(st.step, 11);
  EXPECT_EQ(std::signal(SIGTERM, previous), SIG_IGN);  // restored
  fs::remove_all(dir);
}

TEST(Trainer, StopsAtTargetAccuracyAndOnPatience) {
  const auto train = reversal_data(64, 13), dev = reversal_data(8, 14);
  Rng init(15, 0);
  models::Seq2SeqRNN model(toy_config(), init);
  TrainOptions o = quiet_options();
  o.max_steps = 100;
  o.eval_every = 5;
  o.target_accuracy = 0.0;  // met by the first evaluation
  TrainResult r = train_seq2seq(model, train, eval_set(dev), greedy_fn(model), o);
  EXPECT_EQ(r.stop_reason, "target");
  EXPECT_EQ(r.steps, 5);
  // A decoder that always answers the same: no improvement after the first evaluation.
  DecodeFn constant = [](const std::vector<std::vector<int32_t>>& s) {
    return std::vector<std::vector<int32_t>>(s.size(), std::vector<int32_t>{3});
  };
  o.target_accuracy = 2.0;
  o.patience = 2;
  r = train_seq2seq(model, train, eval_set(dev), constant, o);
  EXPECT_EQ(r.stop_reason, "patience");
  EXPECT_EQ(r.steps, 15);
  EXPECT_EQ(r.best_step, 5);
}

TEST(Evaluate, ExactMatchWerAndPerWithSeveralReferences) {
  EvalSet s;
  s.sources = {{3}, {4}, {5}};
  s.references = {{{3, 4}, {3, 5}}, {{4, 4, 4}}, {{5, 6}}};
  // Outputs: matches the second reference; one substitution in 3; one deletion in 2.
  DecodeFn fake = [](const std::vector<std::vector<int32_t>>& src) {
    std::vector<std::vector<int32_t>> out;
    for (const auto& x : src) {
      if (x[0] == 3) out.push_back({3, 5});
      if (x[0] == 4) out.push_back({4, 7, 4});
      if (x[0] == 5) out.push_back({5});
    }
    return out;
  };
  EvalResult r = evaluate(fake, s, 2);
  EXPECT_EQ(r.examples, 3);
  EXPECT_TRUE(r.multi_reference);
  EXPECT_NEAR(r.accuracy, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.wer, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.per, 2.0 / 7.0, 1e-12);  // (0 + 1 + 1) / (2 + 3 + 2)
  EvalSet bad = s;
  bad.references.pop_back();
  EXPECT_THROW(evaluate(fake, bad, 2), Error);
}

}  // namespace
}  // namespace attn::train
