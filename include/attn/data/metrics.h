// Sequence metrics as the PyTorch G2P reference defines them (evaluate() / score()):
//   WER = fraction of words whose hypothesis equals none of its references;
//   PER = sum over words of the edit distance to the closest reference
//         / sum of that reference's length (the first closest, on ties).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace attn::data {

// Levenshtein distance (unit insert, delete, substitute) between two sequences.
template <typename T>
int64_t edit_distance(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// One word's score.
struct WordScore {
  bool wrong = false;      // hypothesis equals none of the references
  int64_t distance = 0;    // edit distance to the closest reference
  int64_t ref_length = 0;  // length of that reference (the first closest on ties)
};

// Throws attn::Error when `refs` is empty.
WordScore score_word(const std::vector<int32_t>& hyp, const std::vector<std::vector<int32_t>>& refs);

struct ErrorRates {
  double wer = 0;
  double per = 0;
  int64_t words = 0;
  int64_t wrong_words = 0;
  int64_t distance = 0;    // sum of distances (PER numerator)
  int64_t ref_length = 0;  // sum of reference lengths (PER denominator)
};

// Throws attn::Error for an empty list or a zero total reference length.
ErrorRates score(const std::vector<WordScore>& words);

}  // namespace attn::data
