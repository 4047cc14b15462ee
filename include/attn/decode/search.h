// Greedy and beam search over a StepDecoder, batched over sources, each hypothesis with its
// alignment (the attention weights of every output step over the source). Both run under
// ag::NoGradGuard (no tape is recorded).
//
// Scores: log_prob = Σ log p(y_t | y_<t, x) over the output tokens including <eos>.
// Beam search ranks finished hypotheses by log_prob / lp(|y|) with the length penalty of
// Wu et al. 2016 (GNMT, eq. 14): lp(n) = ((5 + n) / 6)^α, n counting <eos>; α = 0 ranks by
// log_prob alone (favouring short outputs), larger α favours longer ones.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/decode/step_decoder.h"

namespace attn::decode {

struct Hypothesis {
  std::vector<int32_t> tokens;  // without <bos> and <eos>
  bool finished = false;        // ended with <eos> (else stopped at max_length)
  double log_prob = 0;          // Σ log p, including the <eos> step when finished
  double score = 0;             // log_prob / lp(steps): the ranking score
  // [steps, S_b]: one row per output step (tokens, then <eos> when finished) over the real
  // source positions of this example (S_b = its length); undefined when the model has none.
  Tensor alignment;
};

struct SearchOptions {
  int64_t max_length = 100;  // output steps per hypothesis, <eos> included
  int32_t bos = 1;
  int32_t eos = 2;
};

struct BeamOptions : SearchOptions {
  int64_t beam_width = 4;
  double alpha = 0.0;   // length normalisation exponent
  int64_t n_best = 1;   // hypotheses returned per source (<= beam_width)
};

// GNMT length penalty ((5 + n) / 6)^α.
double length_penalty(int64_t n, double alpha);

// One hypothesis per source (argmax at every step until <eos> or max_length).
std::vector<Hypothesis> greedy_search(StepDecoder& model, const Tensor& src, const Tensor& src_lengths,
                                      const SearchOptions& options = {});

// Per source, the n_best hypotheses, best first. Each step extends the live hypotheses by
// every token, keeps the best beam_width that do not end in <eos> and sets aside those that
// do. A source is done once beam_width hypotheses are finished and none of the live ones can
// still reach the best finished score (log-probs only fall; with α > 0 a live score is
// bounded by log_prob / lp(max_length)); a source not done at max_length adds its live
// hypotheses (unfinished) to the ranking. beam_width = 1 with α = 0 gives exactly
// greedy_search's output.
std::vector<std::vector<Hypothesis>> beam_search(StepDecoder& model, const Tensor& src, const Tensor& src_lengths,
                                                 const BeamOptions& options = {});

}  // namespace attn::decode
