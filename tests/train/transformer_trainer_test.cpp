// train_seq2seq on a TransformerSeq2Seq (toy reversal task): the loss falls, a checkpoint
// rebuilt from its stored config reloads to identical outputs, and with dropout a resumed run
// ends bit-identical to an uninterrupted one (begin_step). Decoding goes through
// TransformerStepDecoder with the KV cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "attn/autograd/ops.h"
#include "attn/data/batching.h"
#include "attn/decode/search.h"
#include "attn/decode/transformer_step_decoder.h"
#include "attn/io/checkpoint.h"
#include "attn/models/transformer_seq2seq.h"
#include "attn/train/trainer.h"
#include "common/toy_tasks.h"

namespace attn::train {
namespace {

namespace fs = std::filesystem;

using testing::reversal_data;

using testing::eval_set;

models::TransformerSeq2SeqOptions toy(double dropout) {
  models::TransformerSeq2SeqOptions o;
  o.src_vocab = 9;
  o.tgt_vocab = 9;
  o.d_model = 16;
  o.nhead = 2;
  o.num_encoder_layers = 1;
  o.num_decoder_layers = 1;
  o.dim_feedforward = 32;
  o.dropout = dropout;
  o.max_len = 16;
  return o;
}

DecodeFn greedy_fn(models::TransformerSeq2Seq& model) {
  return [&model](const std::vector<std::vector<int32_t>>& srcs) {
    data::Batch b = data::collate_sources(srcs);
    decode::TransformerStepDecoder dec(model);
    decode::SearchOptions so;
    so.max_length = 8;
    std::vector<std::vector<int32_t>> out;
    for (auto& h : decode::greedy_search(dec, b.src, b.src_lengths, so)) out.push_back(h.tokens);
    return out;
  };
}

double dev_loss(models::TransformerSeq2Seq& model, const std::vector<data::SeqPair>& pairs) {
  ag::NoGradGuard g;
  model.eval();
  std::vector<int64_t> idx(pairs.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  data::Batch b = data::collate(pairs, idx);
  ag::Var logits = model.forward(b.src, b.src_lengths, b.tgt_in).logits;
  const int64_t B = logits.size(0), T = logits.size(1), V = logits.size(2);
  return ag::cross_entropy(ag::reshape(logits, {B * T, V}), b.tgt_out.reshape({B * T}), 0).value().get({});
}

TrainOptions quiet_options() {
  TrainOptions o;
  o.quiet = true;
  o.handle_signals = false;
  o.batch_size = 16;
  o.lr = 3e-3;
  o.warmup_steps = 10;
  o.label_smoothing = 0.0;
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_tf_trainer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

TEST(TransformerTrainer, TrainsAndReloadsToIdenticalOutputs) {
  const auto train = reversal_data(128, 1), dev = reversal_data(16, 2);
  const fs::path dir = temp_dir("reload");
  Rng init(3, 0);
  models::TransformerSeq2Seq model(toy(0.1), init);
  const double before = dev_loss(model, dev);
  TrainOptions o = quiet_options();
  o.max_steps = 40;
  o.eval_every = 20;
  o.checkpoint_dir = dir.string();
  TrainResult r = train_seq2seq(model, train, eval_set(dev), greedy_fn(model), o);
  EXPECT_EQ(r.steps, 40);
  EXPECT_EQ(r.history.size(), 2u);
  const double after = dev_loss(model, dev);
  EXPECT_LT(after, before - 0.3) << "before " << before;
  nlohmann::json meta = io::read_checkpoint_metadata((dir / "last.safetensors").string());
  Rng other(99, 0);
  models::TransformerSeq2Seq loaded(models::TransformerSeq2SeqOptions::from_json(meta.at("model")), other);
  NamedParams params = loaded.named_parameters();
  io::TrainState st;
  io::load_checkpoint((dir / "last.safetensors").string(), params, nullptr, &st, nullptr);
  EXPECT_EQ(st.step, 40);
  model.eval();
  loaded.eval();
  data::Batch b = data::collate(dev, {0, 1, 2, 3, 4, 5});
  Tensor a = model.forward(b.src, b.src_lengths, b.tgt_in).logits.value();
  Tensor c = loaded.forward(b.src, b.src_lengths, b.tgt_in).logits.value();
  ASSERT_EQ(a.shape(), c.shape());
  EXPECT_EQ(a.to_vector(), c.to_vector());
  fs::remove_all(dir);
}

// 12 steps, stop, resume to 24 == 24 steps in one go, with dropout 0.2 everywhere.
TEST(TransformerTrainer, ResumeIsBitIdenticalWithDropout) {
  const auto train = reversal_data(80, 7), dev = reversal_data(8, 8);
  auto run = [&](const fs::path& dir, int64_t max_steps, bool resume) {
    Rng init(9, 0);
    auto model = std::make_shared<models::TransformerSeq2Seq>(toy(0.2), init);
    TrainOptions o = quiet_options();
    o.max_steps = max_steps;
    o.eval_every = 6;
    o.checkpoint_dir = dir.string();
    o.resume = resume;
    TrainResult r = train_seq2seq(*model, train, eval_set(dev), greedy_fn(*model), o);
    EXPECT_EQ(r.resumed, resume);
    EXPECT_EQ(r.steps, max_steps);
    return model;
  };
  const fs::path d1 = temp_dir("resume_a"), d2 = temp_dir("resume_b");
  auto straight = run(d1, 24, false);
  run(d2, 12, false);
  auto resumed = run(d2, 24, true);
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

}  // namespace
}  // namespace attn::train
