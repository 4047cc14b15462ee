// `attn demo`: trains the RNN encoder–decoder with attention on the generated dates task
// (no download), shows held-out translations and writes an attention heatmap.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/data/batching.h"
#include "attn/data/dates.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/io/heatmap.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"
#include "cli.h"

namespace attn::cli {

namespace {

struct DemoArgs {
  uint64_t seed = 1;
  double minutes = 2.5;
  std::string attention = "bahdanau";
  std::string cell = "gru";
  std::string out = "out/demo";
  double target = 0.995;  // on the early-stopping sample: a margin over the 99 % goal
  int64_t train_examples = 40000;
  int64_t steps = 6000;
  bool json = false;
};

std::vector<int32_t> ids_of(const data::Vocabulary& v, const std::string& s) { return v.encode_chars(s); }

// Greedy decoding of id sequences (no specials) into id sequences, with alignments.
std::vector<decode::Hypothesis> decode_batch(models::Seq2SeqRNN& model, const std::vector<std::vector<int32_t>>& sources) {
  data::Batch b = data::collate_sources(sources);
  decode::RnnStepDecoder dec(model);
  decode::SearchOptions so;
  so.max_length = 16;  // "YYYY-MM-DD" + <eos> needs 11
  return decode::greedy_search(dec, b.src, b.src_lengths, so);
}

std::string label(const std::string& s) { return s == " " ? "_" : s; }

int run_demo(const DemoArgs& a) {
  Timer total;
  // The model is small: OpenMP fork / join per tiny GEMM costs more than it saves, so one
  // thread unless --threads asks for more.
  if (global_options().threads == 0) set_num_threads(1);
  data::DatesTask task;
  const data::Vocabulary src_vocab = task.source_vocabulary(), tgt_vocab = task.target_vocabulary();
  Rng data_rng(a.seed, 0);
  // Train on pairs of the train part; tune (early stopping) on one held-out sample and report
  // on another, disjoint from it.
  auto to_pairs = [&](const std::vector<data::DateExample>& ex) {
    std::vector<data::SeqPair> p;
    for (const auto& e : ex) p.push_back({ids_of(src_vocab, e.source), ids_of(tgt_vocab, e.target)});
    return p;
  };
  const std::vector<data::SeqPair> train = to_pairs(task.sample(a.train_examples, false, data_rng));
  std::vector<data::DateExample> dev_ex = task.sample(1000, true, data_rng);
  std::set<std::string> dev_sources;
  for (const auto& e : dev_ex) dev_sources.insert(e.source);
  std::vector<data::DateExample> test_ex;
  for (const auto& e : task.sample(2000, true, data_rng))
    if (!dev_sources.count(e.source) && test_ex.size() < 1000) test_ex.push_back(e);
  auto to_eval = [&](const std::vector<data::DateExample>& ex) {
    train::EvalSet s;
    for (const auto& e : ex) {
      s.sources.push_back(ids_of(src_vocab, e.source));
      s.references.push_back({ids_of(tgt_vocab, e.target)});
    }
    return s;
  };
  const train::EvalSet dev = to_eval(dev_ex), test = to_eval(test_ex);

  models::Seq2SeqRNNConfig cfg;
  cfg.src_vocab = src_vocab.size();
  cfg.tgt_vocab = tgt_vocab.size();
  cfg.embed_dim = 32;
  cfg.hidden_dim = 64;
  cfg.decoder_dim = 128;
  cfg.attn_dim = 64;
  cfg.attention = models::parse_attention(a.attention);
  cfg.cell = a.cell == "lstm" ? models::CellKind::lstm : models::CellKind::gru;
  Rng init_rng(a.seed, 1000000);
  models::Seq2SeqRNN model(cfg, init_rng);
  const int64_t n_params = model.num_parameters();

  {
    std::printf("attn demo: dates -> ISO 8601 with an RNN encoder-decoder (%s attention, %s)\n", a.attention.c_str(),
                a.cell.c_str());
    std::printf("  %zu training pairs, %zu held-out for early stopping, %zu held-out for the score; %lld parameters\n",
                train.size(), dev.sources.size(), test.sources.size(), static_cast<long long>(n_params));
    std::fflush(stdout);
  }

  train::TrainOptions to;
  to.seed = a.seed;
  to.batch_size = 64;
  to.max_steps = a.steps;
  to.lr = 3e-3;
  to.warmup_steps = 100;
  to.label_smoothing = 0.0;
  to.clip_norm = 1.0;
  to.eval_every = 250;
  to.target_accuracy = a.target;
  to.max_seconds = std::max(5.0, a.minutes * 60.0 - 10.0);  // leave time for the final report
  to.log_every = 100;
  auto decode_fn = [&](const std::vector<std::vector<int32_t>>& srcs) {
    std::vector<std::vector<int32_t>> out;
    for (auto& h : decode_batch(model, srcs)) out.push_back(h.tokens);
    return out;
  };
  train::TrainResult tr = train::train_seq2seq(model, train, dev, decode_fn, to);
  const train::EvalResult score = train::evaluate(decode_fn, test, 256);
  const double seconds = total.seconds();

  std::printf("\ntrained %lld steps (%lld epochs) in %.1f s, stopped by %s; %.0f tokens/s\n",
              static_cast<long long>(tr.steps), static_cast<long long>(tr.epochs), tr.seconds, tr.stop_reason.c_str(),
              tr.tokens_per_second);
  std::printf("held-out exact match: %.2f%% of %lld dates\n\n", 100 * score.accuracy,
              static_cast<long long>(score.examples));

  // A few held-out examples, and the heatmap of the longest of them.
  const size_t n_show = std::min<size_t>(8, test_ex.size());
  std::vector<std::vector<int32_t>> show;
  for (size_t i = 0; i < n_show; ++i) show.push_back(test.sources[i]);
  std::vector<decode::Hypothesis> hyps = decode_batch(model, show);
  size_t pick = 0;
  for (size_t i = 0; i < n_show; ++i) {
    const std::string out = tgt_vocab.decode_chars(hyps[i].tokens);
    std::printf("  %-34s -> %s %s\n", test_ex[i].source.c_str(), out.c_str(), out == test_ex[i].target ? "ok" : ("(expected " + test_ex[i].target + ")").c_str());
    if (test_ex[i].source.size() > test_ex[pick].source.size()) pick = i;
  }
  std::filesystem::create_directories(a.out);
  const decode::Hypothesis& h = hyps[pick];
  std::vector<std::string> rows, cols;
  for (int32_t t : h.tokens) rows.push_back(tgt_vocab.symbol(t));
  if (h.finished) rows.push_back("<eos>");
  for (char c : test_ex[pick].source) cols.push_back(label(std::string(1, c)));
  io::HeatmapOptions ho;
  ho.title = "attention (" + a.attention + "): " + test_ex[pick].source;
  ho.row_title = "output";
  ho.col_title = "input";
  const std::string png = a.out + "/attention.png", svg = a.out + "/attention.svg";
  io::write_heatmap_png(png, h.alignment, rows, cols, ho);
  io::write_heatmap_svg(svg, h.alignment, rows, cols, ho);
  std::printf("\nattention heatmap of \"%s\": %s, %s\n", test_ex[pick].source.c_str(), png.c_str(), svg.c_str());

  if (a.json) {
    nlohmann::ordered_json j;
    j["task"] = "dates";
    j["attention"] = a.attention;
    j["cell"] = a.cell;
    j["accuracy"] = score.accuracy;
    j["test_examples"] = score.examples;
    j["dev_accuracy"] = tr.best.accuracy;
    j["seconds"] = seconds;
    j["train_seconds"] = tr.seconds;
    j["steps"] = tr.steps;
    j["epochs"] = tr.epochs;
    j["stop_reason"] = tr.stop_reason;
    j["parameters"] = n_params;
    j["tokens_per_second"] = tr.tokens_per_second;
    j["seed"] = a.seed;
    j["heatmaps"] = {png, svg};
    std::printf("%s\n", j.dump().c_str());
  }
  return tr.stop_reason == "signal" ? 130 : 0;
}

ATTN_SUBCOMMAND("demo", "Train an RNN encoder-decoder with attention on generated dates (no download) and draw its attention",
                [](CLI::App& app) -> Runner {
                  auto a = std::make_shared<DemoArgs>();
                  app.add_option("--seed", a->seed, "Seed of data sampling, initialisation and batching");
                  app.add_option("--minutes", a->minutes, "Time cap for the whole run, in minutes")->check(CLI::PositiveNumber);
                  app.add_option("--attention", a->attention, "bahdanau | luong-dot | luong-general | luong-concat | location");
                  app.add_option("--cell", a->cell, "gru | lstm")->check(CLI::IsMember({"gru", "lstm"}));
                  app.add_option("--out", a->out, "Directory for the heatmap (PNG and SVG)");
                  app.add_option("--target", a->target, "Stop training once held-out exact match reaches this (0-1)");
                  app.add_option("--steps", a->steps, "Maximum optimizer steps")->check(CLI::PositiveNumber);
                  app.add_flag("--json", a->json, "Print a JSON summary as the last line of stdout");
                  return [a] { return run_demo(*a); };
                });

}  // namespace

}  // namespace attn::cli
