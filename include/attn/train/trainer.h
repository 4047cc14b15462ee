// A reusable training loop for sequence-to-sequence models (models::Seq2SeqModel):
//   epochs over length-bucketed batches (data/batching.h), label-smoothed cross-entropy
//   with ignore_index = PAD, Adam with a warm-up schedule, gradient clipping by global norm,
//   periodic evaluation on a held-out set (exact match; WER / PER by data/metrics.h),
//   early stopping (patience, target accuracy, step / epoch / time caps), the best
//   checkpoint kept and the last one written at every evaluation (io/checkpoint.h, atomic),
//   resume from the last checkpoint, SIGINT / SIGTERM -> save and return, a progress bar
//   on a terminal (plain log lines otherwise), an optional JSON metrics file.
//
// Resume is exact: the checkpoint holds parameters, Adam's moments and step counts, the
// step, the epoch, the data RNG as it was at the start of the epoch and the position inside
// it; dropout masks are a function of (seed, step) (Seq2SeqModel::begin_step). So a resumed
// run with the same data, options and thread count ends with the same parameters, bit for
// bit, as an uninterrupted one.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/data/batching.h"
#include "attn/models/seq2seq_model.h"

namespace attn::train {

// Held-out sources (ids without specials) with one or more references each.
struct EvalSet {
  std::vector<std::vector<int32_t>> sources;
  std::vector<std::vector<std::vector<int32_t>>> references;
};

struct EvalResult {
  int64_t examples = 0;
  double accuracy = 0;  // exact match with any reference, 0..1
  double wer = 0;       // 1 - accuracy (the G2P reference's WER)
  double per = 0;       // edit distance to the closest reference / its length
  bool multi_reference = false;
};

// Decodes sources (ids without specials) into outputs (ids without specials).
using DecodeFn = std::function<std::vector<std::vector<int32_t>>(const std::vector<std::vector<int32_t>>&)>;

// Throws attn::Error for an empty set, a source without references or a decode function
// returning the wrong number of outputs.
EvalResult evaluate(const DecodeFn& decode, const EvalSet& set, int64_t batch_size = 256);

struct TrainOptions {
  uint64_t seed = 1;          // data order (the model is initialised by the caller)
  int64_t batch_size = 64;
  int64_t max_steps = 10000;  // optimizer steps (in all, across resumes)
  int64_t max_epochs = 1000;
  double max_seconds = 0;     // wall-clock cap for this process, 0 = none
  // Cap on the time spent in training steps (as TrainResult::train_seconds: evaluation and
  // checkpoints excluded, the G2P peer's --train-minutes), for this process; 0 = none.
  double max_train_seconds = 0;
  double lr = 1e-3;           // peak learning rate
  int64_t warmup_steps = 200;
  // optim::make_lr_schedule JSON; null = {"type": "inverse_sqrt", "warmup": warmup_steps}.
  nlohmann::json schedule;
  double beta2 = 0.999;
  double adam_eps = 1e-8;     // Adam's eps (the G2P peer uses betas (0.9, 0.98), eps 1e-9)
  double weight_decay = 0;
  double label_smoothing = 0.1;
  double clip_norm = 1.0;  // 0 = no clipping
  int64_t eval_every = 500;  // steps between evaluations (and at the end)
  int64_t eval_batch_size = 256;
  int64_t patience = 0;          // evaluations without improvement before stopping, 0 = off
  double target_accuracy = 2.0;  // stop once held-out accuracy >= this (> 1: never)
  std::string checkpoint_dir;    // "" = none; else best.safetensors and last.safetensors
  bool resume = false;           // continue from checkpoint_dir/last.safetensors when present
  std::string metrics_path;      // JSON metrics file rewritten at every evaluation ("" = none)
  int progress = -1;             // 1 = bar, 0 = plain lines, -1 = bar when stderr is a terminal
  int64_t log_every = 200;       // steps between plain log lines
  bool handle_signals = true;    // SIGINT / SIGTERM -> save the last checkpoint and return
  bool quiet = false;            // no progress output at all
  nlohmann::json meta;           // stored in checkpoints under "meta" (model config, vocabularies)
};

struct TrainResult {
  int64_t steps = 0;       // optimizer steps in all (including those before a resume)
  int64_t epochs = 0;      // completed epochs
  double seconds = 0;      // wall time of this process's training
  double last_loss = 0;    // mean training loss since the last log line
  // Training throughput counted like the PyTorch G2P peer: tokens = source symbols + target
  // symbols + one end mark per example (data::Batch::n_tokens), over the time spent in
  // training steps only (collate, forward, backward, clipping, optimizer; evaluation,
  // checkpoints and logging excluded). All three cover this process only (not before a resume).
  double tokens_per_second = 0;
  int64_t tokens = 0;
  double train_seconds = 0;
  EvalResult last;         // the last evaluation
  EvalResult best;         // the best evaluation (by accuracy, then PER)
  int64_t best_step = -1;
  std::string stop_reason;  // max_steps | max_epochs | time | target | patience | signal
  bool resumed = false;
  nlohmann::json history = nlohmann::json::array();  // one object per evaluation
};

// Trains `model` in place. `train` examples: ids without specials (collate adds <bos> /
// <eos>); `dev` is evaluated with `decode` (which may switch the model to eval mode; the
// loop switches it back). Throws attn::Error for empty data or bad options.
TrainResult train_seq2seq(models::Seq2SeqModel& model, const std::vector<data::SeqPair>& train, const EvalSet& dev,
                          const DecodeFn& decode, const TrainOptions& options);

// Whether a stop signal (SIGINT / SIGTERM) arrived during the current train_seq2seq call.
bool stop_requested();

}  // namespace attn::train
