// A toy sequence-to-sequence task shared by the trainer, model and fault tests: reverse a
// sequence of 2..5 symbols out of 6 (ids 3..8; 0..2 are PAD / BOS / EOS).
#pragma once

#include <cstdint>
#include <vector>

#include "attn/core/rng.h"
#include "attn/data/batching.h"
#include "attn/train/trainer.h"

namespace attn::testing {

inline std::vector<data::SeqPair> reversal_data(int64_t n, uint64_t seed) {
  Rng rng(seed, 0);
  std::vector<data::SeqPair> out;
  for (int64_t i = 0; i < n; ++i) {
    data::SeqPair p;
    const int64_t len = 2 + static_cast<int64_t>(rng.below(4));
    for (int64_t j = 0; j < len; ++j) p.src.push_back(3 + static_cast<int32_t>(rng.below(6)));
    p.tgt.assign(p.src.rbegin(), p.src.rend());
    out.push_back(p);
  }
  return out;
}

// Each pair's source with its target as the one reference.
inline train::EvalSet eval_set(const std::vector<data::SeqPair>& pairs) {
  train::EvalSet s;
  for (const auto& p : pairs) {
    s.sources.push_back(p.src);
    s.references.push_back({p.tgt});
  }
  return s;
}

}  // namespace attn::testing
