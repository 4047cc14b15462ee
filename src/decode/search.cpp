// Greedy and beam search (see the header).
#include "attn/decode/search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/autograd/var.h"
#include "attn/core/error.h"

namespace attn::decode {

namespace {

// A partial hypothesis while searching.
struct Partial {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> align;  // one row per step
  double log_prob = 0;
  bool valid = false;
};

std::vector<int32_t> check_inputs(const char* op, const Tensor& src, const Tensor& src_lengths,
                                  const SearchOptions& o) {
  ATTN_CHECK(src.defined() && src.dtype() == DType::i32 && src.dim() == 2 && src.size(0) > 0, op,
             ": src must be i32 [B, S] with B > 0, got ", src.defined() ? shape_str(src.shape()) : std::string("undefined"));
  ATTN_CHECK(src_lengths.defined() && src_lengths.dtype() == DType::i32 && src_lengths.dim() == 1 &&
                 src_lengths.size(0) == src.size(0),
             op, ": src_lengths must be i32 [", src.size(0), "], got ",
             src_lengths.defined() ? shape_str(src_lengths.shape()) : std::string("undefined"));
  ATTN_CHECK(o.max_length > 0, op, ": max_length ", o.max_length, " must be positive");
  std::vector<int32_t> lens(static_cast<size_t>(src.size(0)));
  for (int64_t b = 0; b < src.size(0); ++b) {
    lens[b] = static_cast<int32_t>(src_lengths.get({b}));
    ATTN_CHECK(lens[b] >= 1 && lens[b] <= src.size(1), op, ": source length ", lens[b], " of example ", b,
               " not in [1, ", src.size(1), "]");
  }
  return lens;
}

std::vector<float> weights_row(const Tensor& w, int64_t row, int32_t len) {
  std::vector<float> r(static_cast<size_t>(len));
  const float* p = w.data<float>() + row * w.size(1);
  std::copy(p, p + len, r.begin());
  return r;
}

Hypothesis finish(const Partial& p, bool finished, int32_t len, bool has_align, double alpha) {
  Hypothesis h;
  h.tokens = p.tokens;
  h.finished = finished;
  h.log_prob = p.log_prob;
  const int64_t steps = static_cast<int64_t>(p.align.size());
  h.score = p.log_prob / length_penalty(steps, alpha);
  if (has_align) {
    h.alignment = Tensor::zeros({steps, len});
    for (int64_t t = 0; t < steps; ++t)
      std::copy(p.align[t].begin(), p.align[t].end(), h.alignment.data<float>() + t * len);
  }
  return h;
}

}  // namespace

double length_penalty(int64_t n, double alpha) {
  return alpha == 0 ? 1.0 : std::pow((5.0 + static_cast<double>(n)) / 6.0, alpha);
}

std::vector<Hypothesis> greedy_search(StepDecoder& model, const Tensor& src, const Tensor& src_lengths,
                                      const SearchOptions& o) {
  ag::NoGradGuard no_grad;
  const std::vector<int32_t> lens = check_inputs("greedy_search", src, src_lengths, o);
  const int64_t B = src.size(0);
  model.start(src, src_lengths);
  std::vector<Partial> hyp(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  Tensor tokens = Tensor::full({B}, 0.f, DType::i32);
  for (int64_t b = 0; b < B; ++b) tokens.data<int32_t>()[b] = o.bos;
  bool has_align = false;
  for (int64_t t = 0; t < o.max_length; ++t) {
    auto [lp, w] = model.step(tokens);
    ATTN_CHECK(lp.dim() == 2 && lp.size(0) == B, "greedy_search: step returned ", shape_str(lp.shape()),
               " expected [", B, ", V]");
    lp = lp.contiguous();
    has_align = w.defined();
    if (has_align) w = w.contiguous();
    const int64_t V = lp.size(1);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const float* row = lp.data<float>() + b * V;
      const int32_t best = static_cast<int32_t>(std::max_element(row, row + V) - row);
      hyp[b].log_prob += row[best];
      if (has_align) hyp[b].align.push_back(weights_row(w, b, lens[b]));
      else hyp[b].align.emplace_back();
      if (best == o.eos) done[b] = true;
      else hyp[b].tokens.push_back(best);
      tokens.data<int32_t>()[b] = best;
      all_done = all_done && done[b];
    }
    if (all_done) break;
  }
  std::vector<Hypothesis> out;
  for (int64_t b = 0; b < B; ++b) out.push_back(finish(hyp[b], done[b], lens[b], has_align, 0.0));
  return out;
}

std::vector<std::vector<Hypothesis>> beam_search(StepDecoder& model, const Tensor& src, const Tensor& src_lengths,
                                                 const BeamOptions& o) {
  ag::NoGradGuard no_grad;
  const std::vector<int32_t> lens = check_inputs("beam_search", src, src_lengths, o);
  ATTN_CHECK(o.beam_width >= 1, "beam_search: beam_width ", o.beam_width, " must be >= 1");
  ATTN_CHECK(o.n_best >= 1 && o.n_best <= o.beam_width, "beam_search: n_best ", o.n_best, " must be in [1, beam_width ",
             o.beam_width, "]");
  ATTN_CHECK(o.alpha >= 0, "beam_search: alpha ", o.alpha, " must be >= 0");
  const int64_t B = src.size(0), K = o.beam_width, N = B * K;
  model.start(src, src_lengths);
  Tensor rows = Tensor::empty({N}, DType::i32);
  for (int64_t r = 0; r < N; ++r) rows.data<int32_t>()[r] = static_cast<int32_t>(r / K);
  model.reorder(rows);

  std::vector<Partial> live(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b) live[b * K].valid = true;  // one start hypothesis per source
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  Tensor tokens = Tensor::empty({N}, DType::i32);
  for (int64_t r = 0; r < N; ++r) tokens.data<int32_t>()[r] = o.bos;
  bool has_align = false;
  struct Candidate {
    double log_prob;
    int64_t k;
    int32_t v;
  };
  for (int64_t t = 0; t < o.max_length; ++t) {
    auto [lp, w] = model.step(tokens);
    ATTN_CHECK(lp.dim() == 2 && lp.size(0) == N, "beam_search: step returned ", shape_str(lp.shape()), " expected [",
               N, ", V]");
    lp = lp.contiguous();
    has_align = w.defined();
    if (has_align) w = w.contiguous();
    const int64_t V = lp.size(1);
    std::vector<Partial> next(static_cast<size_t>(N));
    Tensor parent = Tensor::empty({N}, DType::i32);
    Tensor next_tokens = Tensor::empty({N}, DType::i32);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < K; ++k) {  // defaults: an invalid row continuing row b*K
        parent.data<int32_t>()[b * K + k] = static_cast<int32_t>(b * K);
        next_tokens.data<int32_t>()[b * K + k] = o.eos;
      }
      if (done[b]) continue;
      std::vector<Candidate> cand;
      for (int64_t k = 0; k < K; ++k) {
        const Partial& p = live[b * K + k];
        if (!p.valid) continue;
        const float* row = lp.data<float>() + (b * K + k) * V;
        for (int32_t v = 0; v < V; ++v) cand.push_back({p.log_prob + row[v], k, v});
      }
      // Best first; ties keep the earlier (row, token), as greedy's argmax does.
      const size_t top = std::min(cand.size(), static_cast<size_t>(2 * K));
      std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(top), cand.end(),
                        [](const Candidate& x, const Candidate& y) {
                          if (x.log_prob != y.log_prob) return x.log_prob > y.log_prob;
                          return x.k != y.k ? x.k < y.k : x.v < y.v;
                        });
      int64_t n_live = 0;
      for (size_t i = 0; i < top && n_live < K; ++i) {
        const Candidate& c = cand[i];
        const int64_t from = b * K + c.k;
        Partial p = live[from];
        p.log_prob = c.log_prob;
        if (has_align) p.align.push_back(weights_row(w, from, lens[b]));
        else p.align.emplace_back();
        if (c.v == o.eos) {
          finished[b].push_back(finish(p, true, lens[b], has_align, o.alpha));
        } else {
          p.tokens.push_back(c.v);
          next[b * K + n_live] = std::move(p);
          parent.data<int32_t>()[b * K + n_live] = static_cast<int32_t>(from);
          next_tokens.data<int32_t>()[b * K + n_live] = c.v;
          ++n_live;
        }
      }
      // Done when nothing is live, or beam_width hypotheses are finished and no live one can
      // still overtake the best of them: log-probs only fall, and for α > 0 a live score
      // L / lp(n) is at most L / lp(max_length).
      double bound = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k < n_live; ++k)
        bound = std::max(bound, next[b * K + k].log_prob / length_penalty(o.max_length, o.alpha));
      double best = -std::numeric_limits<double>::infinity();
      for (const Hypothesis& h : finished[b]) best = std::max(best, h.score);
      if (n_live == 0 || (static_cast<int64_t>(finished[b].size()) >= K && best >= bound)) done[b] = true;
      all_done = all_done && done[b];
    }
    live = std::move(next);
    if (all_done) break;
    model.reorder(parent);
    tokens = next_tokens;
  }
  std::vector<std::vector<Hypothesis>> out(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Hypothesis>& hs = finished[b];
    if (!done[b])  // stopped at max_length: unfinished beams compete too
      for (int64_t k = 0; k < K; ++k)
        if (live[b * K + k].valid) hs.push_back(finish(live[b * K + k], false, lens[b], has_align, o.alpha));
    std::stable_sort(hs.begin(), hs.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    if (static_cast<int64_t>(hs.size()) > o.n_best) hs.resize(static_cast<size_t>(o.n_best));
    out[b] = std::move(hs);
  }
  return out;
}

}  // namespace attn::decode
