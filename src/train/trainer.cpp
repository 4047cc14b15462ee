// The seq2seq training loop (see the header).
#include "attn/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "attn/autograd/ops.h"
#include "attn/core/timer.h"
#include "attn/data/metrics.h"
#include "attn/data/vocabulary.h"
#include "attn/io/atomic_file.h"
#include "attn/io/checkpoint.h"
#include "attn/optim/adam.h"
#include "attn/optim/clip_grad.h"
#include "attn/optim/lr_schedule.h"

namespace attn::train {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signo) { g_stop_signal = signo; }

// Installs the SIGINT / SIGTERM handlers for the scope and restores the previous ones.
class SignalScope {
 public:
  explicit SignalScope(bool on) : on_(on) {
    g_stop_signal = 0;
    if (!on_) return;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    if (!on_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  bool on_;
  struct sigaction old_int_ {}, old_term_ {};
};

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

nlohmann::json eval_json(const EvalResult& e) {
  nlohmann::json j = {{"examples", e.examples}, {"accuracy", e.accuracy}, {"wer", e.wer}, {"per", e.per}};
  return j;
}

bool better(const EvalResult& a, const EvalResult& b) {
  return a.accuracy > b.accuracy || (a.accuracy == b.accuracy && a.per < b.per);
}

}  // namespace

bool stop_requested() { return g_stop_signal != 0; }

EvalResult evaluate(const DecodeFn& decode, const EvalSet& set, int64_t batch_size) {
  ATTN_CHECK(!set.sources.empty() && set.sources.size() == set.references.size(),
             "evaluate: need a non-empty set with one reference list per source, got ", set.sources.size(),
             " sources and ", set.references.size(), " reference lists");
  ATTN_CHECK(batch_size > 0, "evaluate: batch_size ", batch_size, " must be positive");
  std::vector<data::WordScore> scores;
  EvalResult r;
  for (size_t start = 0; start < set.sources.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(set.sources.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> batch(set.sources.begin() + static_cast<std::ptrdiff_t>(start),
                                            set.sources.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<std::vector<int32_t>> hyps = decode(batch);
    ATTN_CHECK(hyps.size() == batch.size(), "evaluate: decode returned ", hyps.size(), " outputs for ", batch.size(),
               " sources");
    for (size_t i = 0; i < hyps.size(); ++i) {
      const auto& refs = set.references[start + i];
      ATTN_CHECK(!refs.empty(), "evaluate: source ", start + i, " has no reference");
      r.multi_reference = r.multi_reference || refs.size() > 1;
      scores.push_back(data::score_word(hyps[i], refs));
    }
  }
  data::ErrorRates er = data::score(scores);
  r.examples = er.words;
  r.wer = er.wer;
  r.per = er.per;
  r.accuracy = 1.0 - er.wer;
  return r;
}

TrainResult train_seq2seq(models::Seq2SeqModel& model, const std::vector<data::SeqPair>& train, const EvalSet& dev,
                          const DecodeFn& decode, const TrainOptions& o) {
  ATTN_CHECK(!train.empty(), "train_seq2seq: no training examples");
  ATTN_CHECK(o.batch_size > 0 && o.max_steps >= 0 && o.max_epochs > 0 && o.eval_every > 0,
             "train_seq2seq: batch_size, max_epochs, eval_every must be positive and max_steps >= 0, got ",
             o.batch_size, ", ", o.max_epochs, ", ", o.eval_every, ", ", o.max_steps);
  ATTN_CHECK(!o.resume || !o.checkpoint_dir.empty(), "train_seq2seq: resume needs a checkpoint_dir");
  const bool has_dev = !dev.sources.empty();
  const bool bar = !o.quiet && (o.progress == 1 || (o.progress == -1 && isatty(STDERR_FILENO)));
  auto log_line = [&](const std::string& s) {
    if (o.quiet) return;
    std::fprintf(stderr, bar ? "\r\033[K%s\n" : "%s\n", s.c_str());
    std::fflush(stderr);
  };

  NamedParams params = model.named_parameters();
  optim::AdamOptions ao;
  ao.lr = o.lr;
  ao.beta2 = o.beta2;
  ao.eps = o.adam_eps;
  ao.weight_decay = o.weight_decay;
  optim::Adam opt(params, ao);
  std::unique_ptr<optim::LrSchedule> schedule = optim::make_lr_schedule(
      o.schedule.is_null() ? nlohmann::json{{"type", "inverse_sqrt"}, {"warmup", std::max<int64_t>(1, o.warmup_steps)}}
                           : o.schedule,
      o.lr);

  TrainResult res;
  io::TrainState state;
  state.rng = Rng(o.seed, 0);
  int64_t skip_batches = 0;  // position inside the current epoch after a resume
  int64_t evals_without_improvement = 0;
  const std::string last_path = o.checkpoint_dir.empty() ? "" : o.checkpoint_dir + "/last.safetensors";
  const std::string best_path = o.checkpoint_dir.empty() ? "" : o.checkpoint_dir + "/best.safetensors";
  if (!o.checkpoint_dir.empty()) std::filesystem::create_directories(o.checkpoint_dir);
  if (o.resume && std::filesystem::exists(last_path)) {
    nlohmann::json meta;
    io::load_checkpoint(last_path, params, &opt, &state, &meta);
    try {
      const auto& t = meta.at("train");
      skip_batches = t.at("batch_in_epoch").get<int64_t>();
      evals_without_improvement = t.at("evals_without_improvement").get<int64_t>();
      res.best_step = t.at("best_step").get<int64_t>();
      res.best.accuracy = t.at("best_accuracy").get<double>();
      res.best.per = t.at("best_per").get<double>();
      res.history = t.at("history");
    } catch (const nlohmann::json::exception& e) {
      fail("train_seq2seq: checkpoint '", last_path, "' lacks the training position: ", e.what());
    }
    res.resumed = true;
    log_line("resumed from " + last_path + " at step " + std::to_string(state.step));
  }

  int64_t step = state.step;
  int64_t batch_in_epoch = skip_batches;
  Rng epoch_rng = state.rng;  // the data RNG at the start of the current epoch
  auto save = [&](const std::string& path) {
    if (path.empty()) return;
    nlohmann::json meta = o.meta;
    meta["train"] = {{"batch_in_epoch", batch_in_epoch},
                     {"evals_without_improvement", evals_without_improvement},
                     {"best_step", res.best_step},
                     {"best_accuracy", res.best.accuracy},
                     {"best_per", res.best.per},
                     {"history", res.history}};
    meta["model"] = model.config_json();
    io::TrainState s;
    s.step = step;
    s.epoch = state.epoch;
    s.rng = epoch_rng;
    io::save_checkpoint(path, model.named_parameters(), &opt, s, meta);
  };

  SignalScope signals(o.handle_signals);
  Timer timer;
  const int64_t first_step = step;
  double loss_sum = 0, tokens = 0, step_seconds = 0;
  int64_t loss_n = 0;
  auto run_eval = [&]() -> bool {  // returns whether to stop (target / patience)
    if (!has_dev) return false;
    EvalResult e = evaluate(decode, dev, o.eval_batch_size);
    model.train();
    res.last = e;
    bool improved = res.best_step < 0 || better(e, res.best);
    if (improved) {
      res.best = e;
      res.best_step = step;
      evals_without_improvement = 0;
    } else {
      ++evals_without_improvement;
    }
    nlohmann::json h = eval_json(e);
    h["step"] = step;
    h["epoch"] = state.epoch;
    h["loss"] = loss_n ? loss_sum / static_cast<double>(loss_n) : 0.0;
    h["lr"] = opt.lr();
    h["seconds"] = timer.seconds();
    res.history.push_back(h);
    char buf[256];
    std::snprintf(buf, sizeof buf, "eval step %lld: accuracy %.2f%%  PER %.3f%%  (%lld examples)%s",
                  static_cast<long long>(step), 100 * e.accuracy, 100 * e.per, static_cast<long long>(e.examples),
                  improved ? "  best" : "");
    log_line(buf);
    if (improved) save(best_path);
    save(last_path);
    if (!o.metrics_path.empty()) {
      nlohmann::json m = {{"history", res.history}, {"best_step", res.best_step}, {"best", eval_json(res.best)}};
      io::write_file_atomic(o.metrics_path, m.dump(1) + "\n");
    }
    if (e.accuracy >= o.target_accuracy) {
      res.stop_reason = "target";
      return true;
    }
    if (o.patience > 0 && evals_without_improvement >= o.patience) {
      res.stop_reason = "patience";
      return true;
    }
    return false;
  };

  model.train();
  bool stop = step >= o.max_steps;
  if (stop) res.stop_reason = "max_steps";
  while (!stop && state.epoch < o.max_epochs) {
    Rng rng = epoch_rng;
    std::vector<std::vector<int64_t>> batches = data::make_train_batches(train, o.batch_size, rng);
    for (; batch_in_epoch < static_cast<int64_t>(batches.size()); ) {
      const Timer step_timer;
      data::Batch b = data::collate(train, batches[static_cast<size_t>(batch_in_epoch)]);
      model.begin_step(step);
      model.zero_grad();
      models::Seq2SeqOutput out = model.forward(b.src, b.src_lengths, b.tgt_in);
      const int64_t B = out.logits.size(0), T = out.logits.size(1), V = out.logits.size(2);
      ag::Var loss = ag::cross_entropy(ag::reshape(out.logits, {B * T, V}), b.tgt_out.reshape({B * T}),
                                       data::Vocabulary::kPad, o.label_smoothing);
      loss.backward();
      NamedParams current = model.named_parameters();
      if (o.clip_norm > 0) optim::clip_grad_norm(current, o.clip_norm);
      opt.set_lr(schedule->lr(step));
      opt.step(current);
      loss_sum += static_cast<double>(loss.value().get({}));
      step_seconds += step_timer.seconds();
      ++step;
      ++batch_in_epoch;
      ++loss_n;
      tokens += static_cast<double>(b.n_tokens);
      const double now = timer.seconds();
      res.tokens = static_cast<int64_t>(tokens);
      res.train_seconds = step_seconds;
      res.tokens_per_second = tokens / std::max(step_seconds, 1e-9);
      if (!o.quiet && (bar || step % o.log_every == 0)) {
        const double rate = res.tokens_per_second;
        // ETA: remaining steps at this process's pace, capped by the time limit.
        double eta = static_cast<double>(o.max_steps - step) * now / static_cast<double>(std::max<int64_t>(1, step - first_step));
        if (o.max_seconds > 0) eta = std::min(eta, o.max_seconds - now);
        char buf[256];
        std::snprintf(buf, sizeof buf, "step %lld/%lld  epoch %lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
                      static_cast<long long>(step), static_cast<long long>(o.max_steps),
                      static_cast<long long>(state.epoch + 1), loss_sum / static_cast<double>(std::max<int64_t>(1, loss_n)),
                      opt.lr(), rate, format_duration(eta).c_str());
        if (bar) {
          const int width = 24;
          const int filled = static_cast<int>(width * std::min(1.0, static_cast<double>(step) / std::max<int64_t>(1, o.max_steps)));
          std::string b2 = "[" + std::string(static_cast<size_t>(filled), '=') + std::string(static_cast<size_t>(width - filled), ' ') + "] ";
          std::fprintf(stderr, "\r\033[K%s%s", b2.c_str(), buf);
          std::fflush(stderr);
        } else {
          log_line(buf);
        }
      }
      res.last_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, loss_n));
      if (stop_requested()) {
        res.stop_reason = "signal";
        stop = true;
      } else if (step % o.eval_every == 0) {
        if (run_eval()) stop = true;
        loss_sum = 0;
        loss_n = 0;
      }
      if (!stop && step >= o.max_steps) {
        res.stop_reason = "max_steps";
        stop = true;
      }
      if (!stop && o.max_seconds > 0 && timer.seconds() >= o.max_seconds) {
        res.stop_reason = "time";
        stop = true;
      }
      if (!stop && o.max_train_seconds > 0 && step_seconds >= o.max_train_seconds) {
        res.stop_reason = "time";
        stop = true;
      }
      if (stop) break;
    }
    if (batch_in_epoch >= static_cast<int64_t>(batches.size())) {  // epoch complete
      ++state.epoch;
      batch_in_epoch = 0;
      epoch_rng = rng;
    }
  }
  if (res.stop_reason.empty()) res.stop_reason = "max_epochs";
  // Final evaluation unless the last step was just evaluated (or a signal asks to hurry).
  const bool evaluated_now = !res.history.empty() && res.history.back().value("step", int64_t{-1}) == step;
  if (res.stop_reason != "signal" && !evaluated_now) {
    const std::string reason = res.stop_reason;
    run_eval();
    res.stop_reason = reason;
  }
  save(last_path);
  if (bar) std::fprintf(stderr, "\n");
  res.steps = step;
  res.epochs = state.epoch;
  res.seconds = timer.seconds();
  return res;
}

}  // namespace attn::train
