// `attn train g2p`, `attn eval g2p` and `attn predict`: grapheme-to-phoneme on CMUdict with
// the RNN (or CNN-encoder) encoder-decoder with attention or the Transformer, trained,
// scored and used from one checkpoint directory.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "attn/core/error.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/data/metrics.h"
#include "attn/io/atomic_file.h"
#include "attn/io/checkpoint.h"
#include "attn/io/heatmap.h"
#include "attn/io/safetensors.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "cli.h"
#include "g2p.h"

namespace attn::cli {

namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------- train g2p

struct TrainG2PArgs {
  std::string data;
  std::string model = "transformer";
  std::string out;
  int64_t test_words = 12000, dev_words = 3000;
  bool keep_stress = false;
  // RNN / CNN
  std::string attention = "bahdanau";
  std::string cell = "gru";
  int64_t embed_dim = 64, hidden_dim = 256, decoder_dim = 256, attn_dim = 128, layers = 1;
  int64_t conv_layers = 4, conv_kernel = 5;
  // Transformer (the peer's recipe)
  int64_t d_model = 256, heads = 4, encoder_layers = 3, decoder_layers = 3, ffn = 1024;
  bool post_norm = false;
  double dropout = -1;  // -1: 0.1 (transformer, the peer's), 0.2 (rnn / cnn)
  // Training (the peer's recipe)
  int64_t batch = 128;
  double lr = 1e-3;
  int64_t warmup = 400;
  std::string schedule = "inverse-sqrt";  // inverse-sqrt (the peer's) | cosine (down to 0 at --max-steps)
  double label_smoothing = 0.1;
  double beta2 = 0.98;
  double adam_eps = 1e-9;
  double clip = -1;  // -1: off for the transformer (the peer does not clip), 1 for rnn / cnn
  int64_t eval_every = 0;  // 0 = once per epoch
  int64_t dev_subset = 0;
  int64_t patience = 5;
  double minutes = 0;
  double train_minutes = 0;
  int64_t max_steps = 0;
  int64_t epochs = 0;  // 0: 30, or no cap when --max-steps is given
  int64_t log_every = 100;
  uint64_t seed = 1;
  bool resume = false;
  std::string json;
  int progress = -1;
  std::string matmul = "f32";  // f32 | bf16: precision of the matrix products (the command line's, also on resume)
  std::set<std::string> given;  // options on the command line (a resumed run keeps the checkpoint's recipe for the rest)
};

// The training recipe a checkpoint keeps, so that `--resume` alone continues the same run: the
// options that decide the parameters from the step on (schedule, learning rate, batch, loss,
// optimizer, clipping, seed of batching and dropout). Stopping rules (--epochs, --minutes,
// --patience, ...) and --matmul belong to each invocation.
nlohmann::json recipe_json(const TrainG2PArgs& a) {
  return {{"--batch", a.batch},   {"--lr", a.lr},       {"--warmup", a.warmup},
          {"--schedule", a.schedule}, {"--label-smoothing", a.label_smoothing}, {"--beta2", a.beta2},
          {"--clip", a.clip},     {"--max-steps", a.max_steps}, {"--seed", a.seed}};
}

template <class T>
void restore_option(const nlohmann::json& saved, const char* name, T& value, const std::set<std::string>& given,
                    std::string& notes) {
  if (!saved.contains(name)) return;
  const T old = saved.at(name).get<T>();
  if (!given.count(name)) {
    value = old;
  } else if (value != old) {
    std::ostringstream msg;
    msg << "  " << name << " " << value << " given: the checkpoint's run used " << old << "\n";
    notes += msg.str();
  }
}

// On --resume: every recipe option not given now takes the checkpoint's value; one given now
// overrides it, and a line says so. Checkpoints from before the recipe was stored keep the
// command line's values. Returns the lines to print about it; a recipe of the wrong shape is
// an error naming the checkpoint.
std::string restore_recipe(TrainG2PArgs& a, const nlohmann::json& meta, const std::string& path) {
  if (!meta.contains("recipe")) return "  this checkpoint holds no training recipe (older attn): the options given now are used\n";
  const nlohmann::json& r = meta.at("recipe");
  if (!r.is_object()) fail("train g2p: checkpoint '", path, "' has a malformed training recipe: not a JSON object");
  std::string notes;
  try {
    restore_option(r, "--batch", a.batch, a.given, notes);
    restore_option(r, "--lr", a.lr, a.given, notes);
    restore_option(r, "--warmup", a.warmup, a.given, notes);
    restore_option(r, "--schedule", a.schedule, a.given, notes);
    restore_option(r, "--label-smoothing", a.label_smoothing, a.given, notes);
    restore_option(r, "--beta2", a.beta2, a.given, notes);
    restore_option(r, "--clip", a.clip, a.given, notes);
    restore_option(r, "--max-steps", a.max_steps, a.given, notes);
    restore_option(r, "--seed", a.seed, a.given, notes);
  } catch (const nlohmann::json::exception& e) {
    fail("train g2p: checkpoint '", path, "' has a malformed training recipe: ", e.what());
  }
  return notes;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

nlohmann::json model_config_json(const TrainG2PArgs& a, int64_t n_chars, int64_t n_phonemes) {
  const double dropout = a.dropout >= 0 ? a.dropout : (a.model == "transformer" ? 0.1 : 0.2);
  nlohmann::json j;
  if (a.model == "transformer") {
    j = {{"src_vocab", n_chars},       {"tgt_vocab", n_phonemes},         {"d_model", a.d_model},
         {"nhead", a.heads},           {"num_encoder_layers", a.encoder_layers},
         {"num_decoder_layers", a.decoder_layers}, {"dim_feedforward", a.ffn},
         {"dropout", dropout},         {"norm_first", !a.post_norm}};
  } else {
    j = {{"src_vocab", n_chars},   {"tgt_vocab", n_phonemes},  {"embed_dim", a.embed_dim},
         {"hidden_dim", a.hidden_dim}, {"encoder_layers", a.layers}, {"decoder_dim", a.decoder_dim},
         {"attn_dim", a.attn_dim}, {"cell", a.cell},           {"attention", a.attention},
         {"dropout", dropout}};
    if (a.model == "cnn") {
      j["encoder"] = "cnn";
      j["conv_layers"] = a.conv_layers;
      j["conv_kernel"] = a.conv_kernel;
    }
  }
  return j;
}

// Dev words sorted by length (stable) so that evaluation batches carry little padding; the
// scores do not depend on the order.
std::vector<std::string> by_length(std::vector<std::string> words) {
  std::stable_sort(words.begin(), words.end(), [](const std::string& x, const std::string& y) { return x.size() < y.size(); });
  return words;
}

int run_train_g2p(const TrainG2PArgs& args) {
  Timer total;
  TrainG2PArgs a = args;
  ATTN_CHECK(!a.out.empty(), "train g2p: --out DIR is required");
  const std::string last_path = (fs::path(a.out) / "last.safetensors").string();
  const bool resuming = a.resume && fs::exists(last_path);

  // On --resume the model and its vocabularies come from the checkpoint (the model options
  // given now are ignored), and so does the training recipe, option by option, unless given
  // again (restore_recipe).
  nlohmann::json resume_meta;
  std::string recipe_notes;
  if (resuming) {
    resume_meta = io::read_checkpoint_metadata(last_path);
    ATTN_CHECK(resume_meta.contains("g2p"), "train g2p: '", last_path, "' is not a G2P checkpoint");
    recipe_notes = restore_recipe(a, resume_meta, last_path);
  }

  g2p::DataSpec spec;
  spec.path = fs::absolute(a.data).lexically_normal().string();
  spec.test_words = a.test_words;
  spec.dev_words = a.dev_words;
  spec.keep_stress = a.keep_stress;
  if (resuming) {
    const g2p::DataSpec saved = g2p::DataSpec::from_json(resume_meta["g2p"].at("data"));
    spec.test_words = saved.test_words;
    spec.dev_words = saved.dev_words;
    spec.keep_stress = saved.keep_stress;
  }
  g2p::G2PData d = g2p::load_data(spec);
  const auto& st = d.dict.stats();

  std::unique_ptr<g2p::G2PModel> m;
  if (resuming) {
    const nlohmann::json& g = resume_meta["g2p"];
    m = std::make_unique<g2p::G2PModel>(g.at("kind").get<std::string>(), g.at("model"),
                                        data::Vocabulary::from_json(g.at("chars").dump(), last_path),
                                        data::Vocabulary::from_json(g.at("phonemes").dump(), last_path), a.seed);
  } else {
    const data::Vocabulary chars = d.dict.char_vocabulary(), phonemes = d.dict.phoneme_vocabulary();
    m = std::make_unique<g2p::G2PModel>(a.model, model_config_json(a, chars.size(), phonemes.size()), chars,
                                        phonemes, a.seed);
  }
  const std::vector<data::SeqPair> train = data::make_examples(d.dict, d.split.train, m->chars(), m->phonemes());
  std::vector<std::string> dev_words = d.split.dev;
  if (a.dev_subset > 0 && a.dev_subset < static_cast<int64_t>(dev_words.size())) dev_words.resize(static_cast<size_t>(a.dev_subset));
  const train::EvalSet dev = g2p::make_eval_set(d.dict, by_length(dev_words), m->chars(), m->phonemes());
  const int64_t n_params = m->model().num_parameters();
  const int64_t steps_per_epoch = (static_cast<int64_t>(train.size()) + a.batch - 1) / a.batch;

  std::printf("attn train g2p: %s\n", m->describe().c_str());
  std::printf("  parameters: %lld (%.2f M)\n", static_cast<long long>(n_params), static_cast<double>(n_params) / 1e6);
  std::printf("  data: %s: %lld words, %lld pronunciations (lines %lld, skipped: %lld non-ASCII, %lld by pattern, "
              "%lld malformed, %lld duplicate after removing stress)\n",
              spec.path.c_str(), static_cast<long long>(d.dict.num_words()),
              static_cast<long long>(d.dict.num_pronunciations()), static_cast<long long>(st.lines),
              static_cast<long long>(st.skipped_nonascii), static_cast<long long>(st.skipped_pattern),
              static_cast<long long>(st.malformed), static_cast<long long>(st.dup_after_destress));
  std::printf("  split: train %zu words (%zu pronunciations = training pairs), dev %zu words (evaluating %zu), test %zu words\n",
              d.split.train.size(), train.size(), d.split.dev.size(), dev.sources.size(), d.split.test.size());
  std::printf("  %lld characters, %lld phonemes; batch %lld pairs, %lld steps per epoch; %d threads (OpenMP wait: %s)\n",
              static_cast<long long>(m->chars().size() - m->chars().num_specials()),
              static_cast<long long>(m->phonemes().size() - m->phonemes().num_specials()),
              static_cast<long long>(a.batch), static_cast<long long>(steps_per_epoch), num_threads(),
              omp_wait_policy().c_str());
  if (resuming) {
    std::printf("  resuming from %s (model, vocabularies and training recipe from the checkpoint)\n", last_path.c_str());
    std::fputs(recipe_notes.c_str(), stdout);
    std::printf("  recipe: batch %lld, lr %g, warm-up %lld then %s%s, label smoothing %g, clip %s, max steps %s, seed %llu\n",
                static_cast<long long>(a.batch), a.lr, static_cast<long long>(a.warmup), a.schedule.c_str(),
                a.schedule == "cosine" ? " to 0 at --max-steps" : "", a.label_smoothing,
                a.clip < 0 ? "default" : fmt("%g", a.clip).c_str(),
                a.max_steps > 0 ? std::to_string(a.max_steps).c_str() : "from --epochs", static_cast<unsigned long long>(a.seed));
  }
  const cpu::MatmulPrecision precision = cpu::parse_matmul_precision(a.matmul.c_str(), "train g2p: --matmul");
  if (precision == cpu::MatmulPrecision::bf16)
    std::printf("  matmul: bf16 (%s; bf16 inputs, f32 accumulation)\n", cpu::bf16_gemm_path_name());
  std::fflush(stdout);
  // Every matrix product of training (dev decoding is f32, below); the attention kernels stay f32.
  cpu::MatmulPrecisionScope precision_scope(precision);

  train::TrainOptions to;
  to.seed = a.seed;
  to.batch_size = a.batch;
  to.max_epochs = a.epochs > 0 ? a.epochs : (a.max_steps > 0 ? int64_t{1} << 40 : 30);
  to.max_steps = a.max_steps > 0 ? a.max_steps : to.max_epochs * steps_per_epoch;
  to.max_seconds = a.minutes * 60.0;
  to.max_train_seconds = a.train_minutes * 60.0;
  to.lr = a.lr;
  to.warmup_steps = a.warmup;
  if (a.schedule == "cosine") {
    ATTN_CHECK(a.max_steps > 0, "train g2p: --schedule cosine decays to 0 at --max-steps; give --max-steps");
    ATTN_CHECK(a.max_steps > a.warmup, "train g2p: --max-steps ", a.max_steps, " must exceed --warmup ", a.warmup,
               " for --schedule cosine");
    to.schedule = {{"type", "cosine"}, {"warmup", a.warmup}, {"total", a.max_steps}};
  }
  to.beta2 = a.beta2;
  to.adam_eps = a.adam_eps;
  to.label_smoothing = a.label_smoothing;
  to.clip_norm = a.clip >= 0 ? a.clip : (m->kind() == "transformer" ? 0.0 : 1.0);
  to.eval_every = a.eval_every > 0 ? a.eval_every : steps_per_epoch;
  to.eval_batch_size = 256;
  to.patience = a.patience;
  to.checkpoint_dir = a.out;
  to.resume = a.resume;
  to.metrics_path = a.json.empty() ? (fs::path(a.out) / "metrics.json").string() : a.json;
  to.progress = a.progress;
  to.log_every = a.log_every;
  to.meta = {{"g2p", m->metadata(spec)}, {"matmul", a.matmul}, {"recipe", recipe_json(a)}};

  double eval_seconds = 0;
  auto decode_fn = [&](const std::vector<std::vector<int32_t>>& srcs) {
    Timer t;
    // Dev decoding in f32 whatever --matmul says: `attn eval` and `attn predict` run in f32,
    // so the checkpoint kept as best is the best under the precision it will be used in.
    cpu::MatmulPrecisionScope f32_scope(cpu::MatmulPrecision::f32);
    std::vector<std::vector<int32_t>> out;
    for (auto& h : m->decode(srcs, {})) out.push_back(std::move(h.tokens));
    eval_seconds += t.seconds();
    return out;
  };
  train::TrainResult tr = train::train_seq2seq(m->model(), train, dev, decode_fn, to);

  std::printf("\ntrained to step %lld (%lld epochs) in %.1f s, stopped by %s\n", static_cast<long long>(tr.steps),
              static_cast<long long>(tr.epochs), tr.seconds, tr.stop_reason.c_str());
  std::printf("training speed: %.0f tokens/s (%lld tokens in %.1f s of training steps; tokens = characters + phonemes "
              "+ one end mark per pair, dev evaluation and checkpoints excluded, as torch_g2p.py counts)\n",
              tr.tokens_per_second, static_cast<long long>(tr.tokens), tr.train_seconds);
  if (tr.best_step >= 0)
    std::printf("best dev: WER %.2f%%  PER %.2f%% at step %lld (%lld words); checkpoints in %s\n", 100 * tr.best.wer,
                100 * tr.best.per, static_cast<long long>(tr.best_step), static_cast<long long>(dev.sources.size()),
                a.out.c_str());

  nlohmann::ordered_json j;
  j["task"] = "g2p";
  j["model"] = m->kind();
  j["config"] = m->config_json();
  j["parameters"] = n_params;
  j["data"] = spec.path;
  j["train_words"] = d.split.train.size();
  j["train_pairs"] = train.size();
  j["dev_words"] = dev.sources.size();
  j["test_words"] = d.split.test.size();
  j["steps"] = tr.steps;
  j["epochs"] = tr.epochs;
  j["stop_reason"] = tr.stop_reason;
  j["resumed"] = tr.resumed;
  j["seconds"] = tr.seconds;
  j["train_seconds"] = tr.train_seconds;
  j["eval_seconds"] = eval_seconds;
  j["tokens"] = tr.tokens;
  j["tokens_per_second"] = tr.tokens_per_second;
  j["threads"] = num_threads();
  j["omp_wait"] = omp_wait_policy();
  j["matmul"] = a.matmul;
  j["best_step"] = tr.best_step;
  j["best"] = {{"wer", tr.best.wer}, {"per", tr.best.per}, {"examples", tr.best.examples}};
  j["history"] = tr.history;
  j["checkpoint_dir"] = a.out;
  io::write_file_atomic(to.metrics_path, j.dump(1) + "\n");
  std::printf("metrics: %s (%.1f s in all)\n", to.metrics_path.c_str(), total.seconds());
  return tr.stop_reason == "signal" ? 130 : 0;
}

void add_train_g2p(CLI::App& train, std::shared_ptr<TrainG2PArgs> args, CLI::App*& sub) {
  TrainG2PArgs& a = *args;
  CLI::App* g = train.add_subcommand("g2p", "Train grapheme-to-phoneme on CMUdict (RNN, CNN-encoder or Transformer)");
  sub = g;
  g->option_defaults()->always_capture_default();
  g->add_option("--data", a.data, "CMUdict file: cmudict.tsv (scripts/fetch-data) or dict.txt")->required();
  g->add_option("--model", a.model, "transformer | rnn | cnn")->check(CLI::IsMember({"transformer", "rnn", "cnn"}));
  g->add_option("--out", a.out, "Directory for best.safetensors, last.safetensors and metrics.json")->required();
  g->add_option("--test-words", a.test_words, "Words in the test split (first by SHA-1; the peer's 12000)")
      ->check(CLI::NonNegativeNumber);
  g->add_option("--dev-words", a.dev_words, "Words in the dev split (next by SHA-1; the peer's 3000)")
      ->check(CLI::NonNegativeNumber);
  g->add_flag("--keep-stress", a.keep_stress, "Keep stress digits on phonemes");
  auto* rnn = "RNN / CNN model";
  g->add_option("--attention", a.attention, "bahdanau | luong-dot | luong-general | luong-concat | location")
      ->check(CLI::IsMember({"bahdanau", "luong-dot", "luong-general", "luong-concat", "location"}))
      ->group(rnn);
  g->add_option("--cell", a.cell, "gru | lstm")->check(CLI::IsMember({"gru", "lstm"}))->group(rnn);
  g->add_option("--embed-dim", a.embed_dim, "Embedding size")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--hidden-dim", a.hidden_dim, "Encoder state per direction")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--decoder-dim", a.decoder_dim, "Decoder state")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--attn-dim", a.attn_dim, "Additive attention size")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--layers", a.layers, "Encoder layers")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--conv-layers", a.conv_layers, "Convolution layers (cnn)")->check(CLI::PositiveNumber)->group(rnn);
  g->add_option("--conv-kernel", a.conv_kernel, "Convolution width (cnn, odd)")->check(CLI::PositiveNumber)->group(rnn);
  auto* tf = "Transformer model (defaults: the peer torch_g2p.py)";
  g->add_option("--d-model", a.d_model, "Model width")->check(CLI::PositiveNumber)->group(tf);
  g->add_option("--heads", a.heads, "Attention heads")->check(CLI::PositiveNumber)->group(tf);
  g->add_option("--encoder-layers", a.encoder_layers, "Encoder layers")->check(CLI::PositiveNumber)->group(tf);
  g->add_option("--decoder-layers", a.decoder_layers, "Decoder layers")->check(CLI::PositiveNumber)->group(tf);
  g->add_option("--ffn", a.ffn, "Feed-forward width")->check(CLI::PositiveNumber)->group(tf);
  g->add_flag("--post-norm", a.post_norm, "Post-norm layers instead of pre-norm")->group(tf);
  g->add_option("--dropout", a.dropout, "Dropout (default 0.1 transformer, 0.2 rnn / cnn)")->check(CLI::Range(0.0, 0.95));
  auto* t = "Training (defaults: the peer's recipe)";
  g->add_option("--batch", a.batch, "Pairs (word, pronunciation) per batch")->check(CLI::PositiveNumber)->group(t);
  g->add_option("--lr", a.lr, "Peak learning rate")->check(CLI::PositiveNumber)->group(t);
  g->add_option("--warmup", a.warmup, "Linear warm-up steps, then the --schedule decay")->check(CLI::PositiveNumber)->group(t);
  g->add_option("--schedule", a.schedule,
                "After warm-up: inverse-sqrt (the peer's), or cosine (half a cosine down to 0 at --max-steps, "
                "which it needs)")
      ->check(CLI::IsMember({"inverse-sqrt", "cosine"}))
      ->group(t);
  g->add_option("--label-smoothing", a.label_smoothing, "Label smoothing")->check(CLI::Range(0.0, 0.99))->group(t);
  g->add_option("--beta2", a.beta2, "Adam beta2")->check(CLI::Range(0.0, 0.9999999))->group(t);
  g->add_option("--clip", a.clip, "Gradient clipping norm, 0 = off (default: off transformer, 1 rnn / cnn)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--eval-every", a.eval_every, "Steps between dev evaluations (default: once per epoch)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--dev-subset", a.dev_subset, "Evaluate on the first N dev words only (0 = all)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--patience", a.patience, "Stop after this many evaluations without a better dev WER (0 = off)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--minutes", a.minutes, "Wall-clock budget of this run, dev evaluation included (0 = none)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--train-minutes", a.train_minutes,
                "Budget of time in training steps, dev evaluation and checkpoints excluded (the peer's --train-minutes; 0 = none)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--max-steps", a.max_steps, "Optimizer steps in all, across resumes (0 = --epochs worth)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--epochs", a.epochs, "Maximum epochs (0: 30, or no cap when --max-steps is given)")
      ->check(CLI::NonNegativeNumber)->group(t);
  g->add_option("--log-every", a.log_every, "Steps between log lines when stderr is not a terminal")
      ->check(CLI::PositiveNumber)->group(t);
  g->add_option("--seed", a.seed, "Seed of initialisation, batching and dropout")->group(t);
  g->add_flag("--resume", a.resume,
              "Continue from DIR/last.safetensors when it exists, with its model and training recipe (batch, lr, "
              "warm-up, schedule, label smoothing, beta2, clip, max steps, seed) unless given again")
      ->group(t);
  g->add_option("--matmul", a.matmul,
                 "Precision of the matrix products: f32, or bf16 (bf16 inputs, f32 accumulation: faster on CPUs "
                 "with AMX / AVX512-BF16); a resumed run uses what is given now; dev evaluation is f32, as eval and predict")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->group(t);
  g->add_option("--json", a.json, "Metrics JSON file (default DIR/metrics.json), rewritten at every evaluation")->group(t);
  g->add_option("--progress", a.progress, "1 = progress bar, 0 = log lines, -1 = bar on a terminal")
      ->check(CLI::Range(-1, 1))->group(t);
}

Runner setup_train(CLI::App& app) {
  app.require_subcommand(1, 1);
  auto g2p_args = std::make_shared<TrainG2PArgs>();
  CLI::App* g2p_sub = nullptr;
  add_train_g2p(app, g2p_args, g2p_sub);
  return [g2p_args, g2p_sub]() -> int {
    if (g2p_sub->parsed()) {
      for (const CLI::Option* o : g2p_sub->get_options())
        if (o->count() > 0) g2p_args->given.insert(o->get_name());
      return run_train_g2p(*g2p_args);
    }
    return 2;
  };
}

ATTN_SUBCOMMAND("train", "Train a model (attn train g2p --help)", setup_train);

// -------------------------------------------------------------------------- eval g2p

struct EvalG2PArgs {
  std::string checkpoint;
  std::string data;
  std::string split = "test";
  int64_t beam = 1;
  double alpha = 0;
  int64_t subset = 0;
  int64_t batch = 256;
  std::string json;
};

int run_eval_g2p(const EvalG2PArgs& a) {
  std::string ckpt;
  nlohmann::json meta;
  std::unique_ptr<g2p::G2PModel> m = g2p::G2PModel::load(a.checkpoint, &ckpt, &meta);
  g2p::DataSpec spec = g2p::DataSpec::from_json(meta["g2p"].at("data"));
  if (!a.data.empty()) spec.path = a.data;
  g2p::G2PData d = g2p::load_data(spec);
  std::vector<std::string> words = a.split == "test" ? d.split.test : d.split.dev;
  if (a.subset > 0 && a.subset < static_cast<int64_t>(words.size())) words.resize(static_cast<size_t>(a.subset));
  const train::EvalSet set = g2p::make_eval_set(d.dict, words, m->chars(), m->phonemes());

  // Batches of words of similar length (the peer's evaluate(): sorted by length).
  std::vector<size_t> order(words.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return words[x].size() < words[y].size(); });
  g2p::DecodeSettings ds;
  ds.beam = a.beam;
  ds.alpha = a.alpha;
  std::vector<std::vector<int32_t>> hyps(words.size());
  const bool tty = isatty(STDERR_FILENO);
  Timer timer;
  double last_line = 0;
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(a.batch)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(a.batch));
    std::vector<std::vector<int32_t>> srcs;
    for (size_t i = start; i < end; ++i) srcs.push_back(set.sources[order[i]]);
    std::vector<decode::Hypothesis> h = m->decode(srcs, ds);
    for (size_t i = start; i < end; ++i) hyps[order[i]] = std::move(h[i - start].tokens);
    const double now = timer.seconds();
    if (end < order.size() && (tty || now - last_line >= 10)) {
      const double eta = now / static_cast<double>(end) * static_cast<double>(order.size() - end);
      std::fprintf(stderr, tty ? "\r\033[Kdecoded %zu/%zu words  %.0f words/s  ETA %.0f s" : "decoded %zu/%zu words  %.0f words/s  ETA %.0f s\n",
                   end, order.size(), static_cast<double>(end) / now, eta);
      std::fflush(stderr);
      last_line = now;
    }
  }
  const double seconds = timer.seconds();
  if (tty && order.size() > static_cast<size_t>(a.batch)) std::fprintf(stderr, "\r\033[K");

  std::vector<data::WordScore> scores;
  for (size_t i = 0; i < words.size(); ++i) scores.push_back(data::score_word(hyps[i], set.references[i]));
  const data::ErrorRates er = data::score(scores);
  const std::string decoder = a.beam > 1 ? "beam " + std::to_string(a.beam) + " (alpha " + fmt("%g", a.alpha) + ")" : "greedy";
  std::printf("%s on %s %s: %lld words, WER %.2f%% (%lld wrong), PER %.2f%% (%lld / %lld phonemes), %s, %.0f words/s\n",
              ckpt.c_str(), spec.path.c_str(), a.split.c_str(), static_cast<long long>(er.words), 100 * er.wer,
              static_cast<long long>(er.wrong_words), 100 * er.per, static_cast<long long>(er.distance),
              static_cast<long long>(er.ref_length), decoder.c_str(), static_cast<double>(er.words) / seconds);

  if (!a.json.empty()) {
    nlohmann::ordered_json j;
    j["checkpoint"] = ckpt;
    j["step"] = std::stoll(io::read_safetensors_metadata(ckpt).at("step"));
    j["model"] = m->kind();
    j["data"] = spec.path;
    j["split"] = a.split;
    j["words"] = er.words;
    j["wer"] = er.wer;
    j["per"] = er.per;
    j["wrong_words"] = er.wrong_words;
    j["phoneme_errors"] = er.distance;
    j["reference_phonemes"] = er.ref_length;
    j["decoder"] = a.beam > 1 ? "beam" : "greedy";
    j["beam"] = a.beam;
    j["alpha"] = a.alpha;
    j["seconds"] = seconds;
    j["words_per_second"] = static_cast<double>(er.words) / seconds;
    j["threads"] = num_threads();
    io::write_file_atomic(a.json, j.dump(1) + "\n");
  }
  return 0;
}

Runner setup_eval(CLI::App& app) {
  app.require_subcommand(1, 1);
  auto args = std::make_shared<EvalG2PArgs>();
  EvalG2PArgs& a = *args;
  CLI::App* g = app.add_subcommand("g2p", "WER and PER of a G2P checkpoint on the test or dev split");
  g->option_defaults()->always_capture_default();
  g->add_option("--checkpoint", a.checkpoint, "Training directory (its best.safetensors) or a checkpoint file")->required();
  g->add_option("--data", a.data, "CMUdict file (default: the path stored in the checkpoint)");
  g->add_option("--split", a.split, "test | dev")->check(CLI::IsMember({"test", "dev"}));
  g->add_option("--beam", a.beam, "Beam width (1 = greedy)")->check(CLI::PositiveNumber);
  g->add_option("--alpha", a.alpha, "Beam length normalisation exponent (GNMT; 0 = none, as the peer)")
      ->check(CLI::NonNegativeNumber);
  g->add_option("--subset", a.subset, "Score only the first N words of the split (0 = all)")->check(CLI::NonNegativeNumber);
  g->add_option("--batch", a.batch, "Words decoded together")->check(CLI::PositiveNumber);
  g->add_option("--json", a.json, "Write the scores as JSON to this file");
  return [args, g]() -> int {
    if (g->parsed()) return run_eval_g2p(*args);
    return 2;
  };
}

ATTN_SUBCOMMAND("eval", "Evaluate a model (attn eval g2p --help)", setup_eval);

// --------------------------------------------------------------------------- predict

struct PredictArgs {
  std::string checkpoint;
  std::vector<std::string> words;
  int64_t beam = 1;
  double alpha = 0;
  std::string heatmap;
  int64_t layer = -1;
};

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// FILE for one word, else FILE's stem + "_" + word + extension (one picture per word).
std::string heatmap_path(const std::string& file, const std::string& word, size_t n_words) {
  if (n_words == 1) return file;
  const fs::path p(file);
  std::string safe;
  for (char c : word) safe += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return (p.parent_path() / (p.stem().string() + "_" + safe + p.extension().string())).string();
}

int run_predict(const PredictArgs& a) {
  ATTN_CHECK(!a.words.empty(), "predict: no words given");
  std::string ext;
  if (!a.heatmap.empty()) {
    ext = lowercase(fs::path(a.heatmap).extension().string());
    ATTN_CHECK(ext == ".png" || ext == ".svg", "predict: --heatmap '", a.heatmap, "' must end in .png or .svg");
  }
  std::string ckpt;
  std::unique_ptr<g2p::G2PModel> m = g2p::G2PModel::load(a.checkpoint, &ckpt);
  if (!a.heatmap.empty() && m->kind() == "transformer") {
    const int64_t n = m->decoder_layers();
    ATTN_CHECK(a.layer >= -n && a.layer < n, "predict: --layer ", a.layer, " outside the decoder's ", n,
               " layers (0..", n - 1, ", or -1 for the last)");
  }
  std::vector<std::string> words;
  std::vector<std::vector<int32_t>> srcs;
  for (const auto& w : a.words) {
    words.push_back(lowercase(w));  // CMUdict words are lowercased
    srcs.push_back(m->encode_word(words.back()));
  }
  g2p::DecodeSettings ds;
  ds.beam = a.beam;
  ds.alpha = a.alpha;
  std::vector<decode::Hypothesis> hyps = m->decode(srcs, ds);
  for (size_t i = 0; i < words.size(); ++i) {
    std::string line = words[i] + " ";
    for (const auto& p : m->phonemes().decode(hyps[i].tokens)) line += " " + p;
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
  if (a.heatmap.empty()) return 0;

  for (size_t i = 0; i < words.size(); ++i) {
    const decode::Hypothesis& h = hyps[i];
    std::vector<std::string> rows, cols;
    for (int32_t t : h.tokens) rows.push_back(m->phonemes().symbol(t));
    if (h.finished) rows.push_back(data::Vocabulary::kEosSymbol);
    for (char c : words[i]) cols.push_back(std::string(1, c));
    io::HeatmapOptions ho;
    ho.row_title = "phonemes";
    ho.col_title = "letters";
    const std::string path = heatmap_path(a.heatmap, words[i], words.size());
    if (m->kind() == "transformer") {
      const Tensor w = m->cross_attention(srcs[i], h.tokens, static_cast<int64_t>(rows.size()), a.layer);  // [H, rows, S]
      const int64_t layer = a.layer < 0 ? m->decoder_layers() + a.layer : a.layer;
      ho.title = words[i] + ": cross-attention, decoder layer " + std::to_string(layer);
      if (ext == ".png")
        io::write_heatmap_grid_png(path, w, rows, cols, ho);
      else
        io::write_heatmap_grid_svg(path, w, rows, cols, ho);
    } else {
      ATTN_CHECK(h.alignment.defined(), "predict: the model returned no alignment for '", words[i], "'");
      ho.title = words[i] + ": " + m->config_json().value("attention", std::string("")) + " attention";
      if (ext == ".png")
        io::write_heatmap_png(path, h.alignment, rows, cols, ho);
      else
        io::write_heatmap_svg(path, h.alignment, rows, cols, ho);
    }
    std::fprintf(stderr, "heatmap of '%s': %s\n", words[i].c_str(), path.c_str());
  }
  return 0;
}

ATTN_SUBCOMMAND("predict", "Pronounce words with a G2P checkpoint (optionally draw the attention)", [](CLI::App& app) -> Runner {
  auto a = std::make_shared<PredictArgs>();
  app.option_defaults()->always_capture_default();
  app.add_option("--checkpoint", a->checkpoint, "Training directory (its best.safetensors) or a checkpoint file")->required();
  app.add_option("words", a->words, "Words to pronounce (lowercased)")->required();
  app.add_option("--beam", a->beam, "Beam width (1 = greedy)")->check(CLI::PositiveNumber);
  app.add_option("--alpha", a->alpha, "Beam length normalisation exponent (GNMT)")->check(CLI::NonNegativeNumber);
  app.add_option("--heatmap", a->heatmap,
                 "Write the attention picture here (.png or .svg); with several words one file each, named "
                 "FILE's stem + _word");
  app.add_option("--layer", a->layer, "Transformer: decoder layer whose heads are drawn (-1 = last)");
  return [a] { return run_predict(*a); };
});

}  // namespace

}  // namespace attn::cli
