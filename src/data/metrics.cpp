#include "attn/data/metrics.h"

#include "attn/core/error.h"

namespace attn::data {

WordScore score_word(const std::vector<int32_t>& hyp,
                     const std::vector<std::vector<int32_t>>& refs) {
  ATTN_CHECK(!refs.empty(), "score_word: refs is empty; every word needs at least one reference");
  WordScore s;
  s.wrong = true;
  bool first = true;
  for (const auto& r : refs) {
    if (r == hyp) s.wrong = false;
    int64_t d = edit_distance(hyp, r);
    if (first || d < s.distance) {  // strict <: the first closest wins, like Python's min()
      s.distance = d;
      s.ref_length = static_cast<int64_t>(r.size());
      first = false;
    }
  }
  return s;
}

ErrorRates score(const std::vector<WordScore>& words) {
  ATTN_CHECK(!words.empty(), "score: no words to score");
  ErrorRates e;
  e.words = static_cast<int64_t>(words.size());
  for (const auto& w : words) {
    e.wrong_words += w.wrong ? 1 : 0;
    e.distance += w.distance;
    e.ref_length += w.ref_length;
  }
  ATTN_CHECK(e.ref_length > 0, "score: total reference length is 0; PER is undefined");
  e.wer = static_cast<double>(e.wrong_words) / static_cast<double>(e.words);
  e.per = static_cast<double>(e.distance) / static_cast<double>(e.ref_length);
  return e;
}

}  // namespace attn::data
