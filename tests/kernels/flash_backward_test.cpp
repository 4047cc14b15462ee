// The fused attention backward against the double-precision reference: every mask, GQA,
// dropout, strided inputs, odd sizes around the 64-wide tiles, 1 and 2 threads and every
// compiled SIMD target.
//
// Tolerance: |fused − ref| ≤ 1e-5 · max|ref| per gradient tensor. Each gradient element is
// an f32 sum over at most ~1000 keys or queries (and D ≤ 256 for the recomputed scores), so
// its rounding error is a few ulp of the largest term times √terms ≈ 1e-6 of the tensor's
// scale; measured worst here ≈ 2e-6. Per-element relative error is not attainable: many
// elements are near-zero results of cancelling sums.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <vector>

#include "attention_test_util.h"
#include "attn/core/threading.h"
#include "attn/kernels/cpu/flash_attention_backward.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::Case;
using test::Problem;

constexpr double kTol = 1e-5;

struct Grads {
  std::vector<float> dq, dk, dv, dbias;  // dbias only when the problem has a bias
};

// Forward by the reference (out, lse), then the reference backward.
Grads reference_grads(Problem& pr) {
  ref::ScoreParams s;
  s.fn = ScoreFn::scaled_dot;
  ref::attention_forward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                         pr.lse.data(), nullptr);
  Grads g;
  g.dq.assign(pr.q.size(), 0.f);
  g.dk.assign(pr.k.size(), 0.f);
  g.dv.assign(pr.v.size(), 0.f);
  if (pr.p.bias) g.dbias.assign(static_cast<size_t>(pr.p.B * pr.p.Hq * pr.p.Nq * pr.p.Nk), 0.f);
  ref::attention_backward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                          pr.lse.data(), pr.dout.data(), g.dq.data(), g.dk.data(), g.dv.data(),
                          nullptr, nullptr, nullptr, nullptr, pr.p.bias ? g.dbias.data() : nullptr,
                          nullptr);
  return g;
}

// The fused kernel; outputs start as NaN so that an element it forgets to write fails.
Grads fused_grads(const Problem& pr) {
  Grads g;
  const float nan = std::nanf("");
  g.dq.assign(pr.q.size(), nan);
  g.dk.assign(pr.k.size(), nan);
  g.dv.assign(pr.v.size(), nan);
  if (pr.p.bias) g.dbias.assign(static_cast<size_t>(pr.p.B * pr.p.Hq * pr.p.Nq * pr.p.Nk), nan);
  cpu::flash_attention_backward(pr.p, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                                pr.lse.data(), pr.dout.data(), g.dq.data(), g.dk.data(),
                                g.dv.data(), pr.p.bias ? g.dbias.data() : nullptr);
  return g;
}

// Gradients are stored contiguous [B, H, N, D] whatever the input strides, so with strided
// inputs the reference's and ours are compared in the same layout.
void check_case(const Case& c, int threads = 1) {
  SCOPED_TRACE(::testing::Message() << c.name() << " threads " << threads);
  Problem pr(c);
  ASSERT_TRUE(cpu::flash_attention_backward_supports(pr.p));
  const Grads want = reference_grads(pr);
  set_num_threads(threads);
  const Grads got = fused_grads(pr);
  set_num_threads(1);
  test::expect_close(got.dq, want.dq, kTol, "dq");
  test::expect_close(got.dk, want.dk, kTol, "dk");
  test::expect_close(got.dv, want.dv, kTol, "dv");
  test::expect_close(got.dbias, want.dbias, kTol, "dbias");
}

TEST(FlashBackward, SizesAroundTheTiles) {
  const int64_t Ns[] = {1, 2, 7, 63, 64, 65};
  const int64_t Ds[] = {1, 16, 63, 64, 80, 128, 256};
  for (int64_t n : Ns)
    for (int64_t d : Ds) {
      Case c;
      c.Nq = n, c.Nk = n, c.D = d;
      check_case(c);
    }
}

TEST(FlashBackward, LongSequenceSmallHead) {
  Case c;
  c.Nq = 1000, c.Nk = 1000, c.D = 16, c.causal = true;
  check_case(c, 2);
  c.causal = false, c.Nk = 130;
  check_case(c, 2);
}

TEST(FlashBackward, QueriesAndKeysDiffer) {
  for (auto [nq, nk] : {std::pair<int64_t, int64_t>{1, 65}, {7, 200}, {130, 63}, {65, 1}}) {
    Case c;
    c.B = 2, c.Hq = 2, c.Hkv = 2, c.Nq = nq, c.Nk = nk, c.D = 63, c.Dv = 80;
    check_case(c);
  }
}

TEST(FlashBackward, GroupedQueryHeads) {
  Case c;
  c.B = 2, c.Hq = 6, c.Hkv = 2, c.Nq = 70, c.Nk = 90, c.D = 16;
  check_case(c, 2);
  c.Hkv = 1;  // multi-query
  c.causal = true, c.query_offset = 20;
  check_case(c, 2);
}

TEST(FlashBackward, CausalWithOffsets) {
  for (int64_t off : {int64_t{0}, int64_t{-10}, int64_t{37}, int64_t{130}}) {
    Case c;
    c.Hq = 2, c.Hkv = 1, c.Nq = 100, c.Nk = 150, c.D = 16, c.causal = true, c.query_offset = off;
    check_case(c);
  }
}

TEST(FlashBackward, SlidingWindow) {
  Case c;
  c.Nq = 150, c.Nk = 150, c.D = 16, c.window = true, c.window_left = 20, c.window_right = 5;
  check_case(c, 2);
  c.causal = true, c.window_left = 70, c.window_right = 0;
  check_case(c);
  // Rows whose window holds no key (offset pushes them past every key).
  c.causal = false, c.query_offset = 100, c.window_left = 3, c.window_right = 3;
  check_case(c);
}

TEST(FlashBackward, KeyLengthsIncludingEmpty) {
  Case c;
  c.B = 3, c.Hq = 2, c.Hkv = 2, c.Nq = 40, c.Nk = 100, c.D = 16;
  c.key_lengths = {100, 65, 0};  // batch 2 sees no key: zero gradients, no NaN
  check_case(c, 2);
}

TEST(FlashBackward, AdditiveBias) {
  Case c;
  c.B = 2, c.Hq = 2, c.Hkv = 1, c.Nq = 70, c.Nk = 66, c.D = 16, c.bias = Case::Bias::full;
  check_case(c);
  c.bias = Case::Bias::broadcast_rows, c.causal = true;
  check_case(c, 2);
}

TEST(FlashBackward, Dropout) {
  Case c;
  c.B = 2, c.Hq = 2, c.Hkv = 1, c.Nq = 70, c.Nk = 80, c.D = 16, c.dropout = 0.3;
  check_case(c, 2);
  c.causal = true, c.key_lengths = {80, 50};
  check_case(c);
}

TEST(FlashBackward, StridedInputsAndDotScore) {
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 65, c.Nk = 70, c.D = 63, c.strided = true;
  check_case(c, 2);
  c.scale = 1.0;  // the plain dot score
  c.D = 16;
  check_case(c);
}

TEST(FlashBackward, DeterministicForAThreadCount) {
  Case c;
  c.B = 1, c.Hq = 2, c.Hkv = 1, c.Nq = 300, c.Nk = 300, c.D = 16, c.causal = true;
  Problem pr(c);
  reference_grads(pr);  // fills out and lse
  set_num_threads(2);
  const Grads a = fused_grads(pr);
  const Grads b = fused_grads(pr);
  set_num_threads(1);
  ASSERT_EQ(a.dq.size(), b.dq.size());
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
}

// Rows whose |lse| ≥ 128 get P from the backward's own row max and sum (a pre-pass), the
// others from lse. Here every 5th query row of every head has q = 0 and S added to the bias
// on keys j % 3 == 0; the sums round to exactly S (ulp(1e10) = 1024), a tie in f32 and in the
// double reference alike, so the answer does not hang on the rounding of the scores (with
// q·k ≠ 0 it would: the reference would resolve 1e10 + q·k). Both kinds of rows share query
// blocks; 3 query blocks, causal, 2 threads. With exp(s − lse) the tied keys got P = 1 each.
TEST(FlashBackward, HugeLogitRowsBesideOrdinaryOnes) {
  for (double S : {1e10, 1e30}) {
    Case c;
    c.B = 1, c.Hq = 2, c.Hkv = 1, c.Nq = 150, c.Nk = 140, c.D = 16, c.bias = Case::Bias::full;
    c.causal = true, c.query_offset = 10;
    SCOPED_TRACE(::testing::Message() << "S " << S);
    Problem pr(c);
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; i += 5) {
        for (int64_t d = 0; d < c.D; ++d) pr.q[(h * c.Nq + i) * c.D + d] = 0.f;
        for (int64_t j = 0; j < c.Nk; j += 3) pr.bias[(h * c.Nq + i) * c.Nk + j] += static_cast<float>(S);
      }
    const Grads want = reference_grads(pr);
    int64_t huge_rows = 0;
    for (float l : pr.lse) huge_rows += std::fabs(l) >= 128 && std::isfinite(l);
    ASSERT_GT(huge_rows, 50);  // the case holds both kinds of rows
    set_num_threads(2);
    const Grads got = fused_grads(pr);
    set_num_threads(1);
    test::expect_close(got.dq, want.dq, kTol, "dq");
    test::expect_close(got.dk, want.dk, kTol, "dk");
    test::expect_close(got.dv, want.dv, kTol, "dv");
    test::expect_close(got.dbias, want.dbias, kTol, "dbias");
  }
}

// Work units take up to 4 key blocks at once (each query tile then serves them all) when
// that leaves ≥ 8 units per thread: B·Hkv = 8 and Nk = 300 (5 blocks, the last one of 44
// keys) gives groups of 4 + 1 at 1 and 2 threads; B·Hkv = 4 gives groups of 2 + 2 + 1 at one
// thread. Masks make some blocks of a group invisible to some query tiles.
TEST(FlashBackward, KeyBlockGroupsWithMasks) {
  Case c;
  c.B = 2, c.Hq = 8, c.Hkv = 4, c.Nq = 80, c.Nk = 300, c.D = 16, c.Dv = 8;
  c.causal = true, c.query_offset = 150;
  check_case(c, 1);
  check_case(c, 2);
  c.causal = false, c.window = true, c.window_left = 90, c.window_right = 10;
  check_case(c, 2);
  c.window = false, c.key_lengths = {300, 130}, c.bias = Case::Bias::full, c.dropout = 0.2;
  check_case(c, 1);
  c.B = 1, c.key_lengths = {200}, c.bias = Case::Bias::none, c.strided = true;
  check_case(c, 1);
}

// Training batches of short sequences (Transformer and G2P: N 6-32, D 64, padded keys): one
// key block per unit, so dq rows are stored by their one unit (no per-thread buffers) and
// the score tiles are as wide as the keys within the key length (rounded up to 16). Every
// gradient against the reference at 1 and 2 threads, and bit-identical at 1 and 2 threads.
TEST(FlashBackward, ShortSequencesOfTrainingBatches) {
  std::vector<Case> cases;
  Case c;
  c.B = 5, c.Hq = 4, c.Hkv = 4, c.Nq = 13, c.Nk = 13, c.D = 64;
  c.key_lengths = {13, 7, 1, 0, 12};
  cases.push_back(c);  // encoder self-attention
  c.Nq = 6, c.Nk = 16, c.key_lengths = {16, 9, 3, 0, 15}, c.strided = true;
  cases.push_back(c);  // cross attention, Nq != Nk, strided heads
  c.strided = false, c.key_lengths = {}, c.Nq = 10, c.Nk = 32, c.causal = true, c.query_offset = 22;
  cases.push_back(c);  // causal with an offset
  c.Nq = 32, c.Nk = 32, c.query_offset = 0, c.Hq = 4, c.Hkv = 2;
  cases.push_back(c);  // decoder self-attention, grouped heads
  c.causal = false, c.Hkv = 4, c.B = 3, c.key_lengths = {32, 17, 31}, c.bias = Case::Bias::full,
  c.dropout = 0.1;
  cases.push_back(c);  // bias (dbias) and dropout with padded keys
  c.bias = Case::Bias::none, c.dropout = 0.0, c.window = true, c.window_left = 5, c.window_right = 2,
  c.Nk = 40, c.key_lengths = {40, 3, 22};
  cases.push_back(c);  // sliding window
  for (const Case& e : cases) {
    check_case(e, 1);
    check_case(e, 2);
    Problem pr(e);
    reference_grads(pr);  // fills out and lse
    set_num_threads(1);
    const Grads one = fused_grads(pr);
    set_num_threads(2);
    const Grads two = fused_grads(pr);
    set_num_threads(1);
    ASSERT_EQ(one.dq.size(), two.dq.size());
    EXPECT_EQ(one.dq, two.dq) << e.name();
    EXPECT_EQ(one.dk, two.dk) << e.name();
    EXPECT_EQ(one.dv, two.dv) << e.name();
  }
}

TEST(FlashBackward, EverySimdTarget) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    SCOPED_TRACE(hwy::TargetName(t));
    hwy::SetSupportedTargetsForTest(t);
    Case c;
    c.B = 2, c.Hq = 2, c.Hkv = 1, c.Nq = 67, c.Nk = 70, c.D = 80, c.causal = true,
    c.key_lengths = {70, 40}, c.dropout = 0.1;
    check_case(c, 2);
    Case e;
    e.Nq = 5, e.Nk = 9, e.D = 1;
    check_case(e);
    Case s;  // a short padded batch (one key block: dq stored directly)
    s.B = 3, s.Hq = 2, s.Hkv = 2, s.Nq = 12, s.Nk = 14, s.D = 64, s.key_lengths = {14, 5, 0};
    check_case(s, 2);
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace attn
