// Private to kernels/cpu: which query rows can see any key of a key block, from the
// structural masks alone (causal, window, key lengths), so backward kernels that walk key
// blocks skip rows — and whole blocks — that the masks hide.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "attn/kernels/attention_problem.h"

namespace attn::cpu {

struct RowRange {
  int64_t lo = 0, hi = -1;  // inclusive; empty when lo > hi
  bool empty() const { return lo > hi; }
};

// Rows i of batch b with some visible key in [j0, j0 + kn): p_i = i + query_offset must lie in
// [j0, ...) for causal and in [j0 - right, j0 + kn - 1 + left] for a window; a block at or past
// the batch's key length is hidden from every row.
inline RowRange rows_seeing_key_block(const kernels::AttentionProblem& p, int64_t b, int64_t j0,
                                      int64_t kn) {
  const int64_t klen = p.key_lengths ? std::min<int64_t>(p.key_lengths[b], p.Nk) : p.Nk;
  // Start from every row (|query_offset| <= 2^62, so no overflow): a fixed sentinel such as
  // INT64_MAX / 4 lies below p_i once query_offset > 2^61 and hid every row (fuzz_attend).
  int64_t p_lo = p.query_offset;
  int64_t p_hi = p.Nq - 1 + p.query_offset;
  if (p.causal) p_lo = std::max(p_lo, j0);
  if (p.has_window) {
    p_lo = std::max(p_lo, j0 - p.window_right);
    p_hi = std::min(p_hi, j0 + kn - 1 + p.window_left);
  }
  RowRange r{std::max<int64_t>(0, p_lo - p.query_offset),
             std::min<int64_t>(p.Nq - 1, p_hi - p.query_offset)};
  if (j0 >= klen) r = RowRange{};
  return r;
}

}  // namespace attn::cpu
