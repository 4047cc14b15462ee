// The fused general backward (q' = q W, the fused dot backward on q', then dq = dq' Wᵀ and
// dW = qᵀ dq') against the double-precision reference backward: randomised shapes with
// Dk ≠ D, every mask, GQA, dropout, strided inputs, 1 and 2 threads.
//
// Tolerance as in flash_backward_test.cpp: |fused − ref| ≤ 1e-5 · max|ref| per gradient
// tensor. W is drawn with entries N(0, 1/(D·√Dk)), so q' = q W has entries of variance
// 1/√Dk and the scores q'·k are O(1), as for scaled_dot there (general has no 1/√D of its
// own; with O(√D·√Dk) logits f32 scores alone would be off by more than 1e-5 of P).
// dq and dW add one f32 GEMM each, over Dk and over B·Hq·Nq ≤ 1000 terms: still ~1e-6.
// The bound is relative to the tensor's largest element, so a tensor that is small as a
// whole fails it on rounding alone: one query over 3 keys with D = 8, Dk = 256 gave a dq of
// max 0.019 (a cancelling Σ_j dS_ij = 0) off by 2e-7, 1.2e-5 of that; such shapes are left
// out rather than the bound loosened.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention_test_util.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/flash_attention_backward.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::Case;
using test::Problem;

constexpr double kTol = 1e-5;

struct Grads {
  std::vector<float> dq, dk, dv, dw, dbias;
};

Grads alloc(const Problem& pr, float fill) {
  Grads g;
  g.dq.assign(pr.q.size(), fill);
  g.dk.assign(pr.k.size(), fill);
  g.dv.assign(pr.v.size(), fill);
  g.dw.assign(static_cast<size_t>(pr.p.D * pr.p.Dk), fill);
  if (pr.p.bias) g.dbias.assign(static_cast<size_t>(pr.p.B * pr.p.Hq * pr.p.Nq * pr.p.Nk), fill);
  return g;
}

std::vector<float> random_w(const Problem& pr, uint64_t seed) {
  Rng rng(seed);
  const double sd = 1.0 / std::sqrt(static_cast<double>(pr.p.D) * std::sqrt(static_cast<double>(pr.p.Dk)));
  std::vector<float> w(static_cast<size_t>(pr.p.D * pr.p.Dk));
  for (float& e : w) e = static_cast<float>(sd * rng.normal());
  return w;
}

// fused_forward: out and lse from the fused general forward (as the API's automatic path
// does), else from the reference.
void check_case(Case c, int threads, bool fused_forward = false) {
  c.scale = 1.0;  // general: p.scale = 1
  SCOPED_TRACE(::testing::Message() << "general " << c.name() << " threads " << threads
                                    << (fused_forward ? " fused forward" : ""));
  Problem pr(c);
  const std::vector<float> w = random_w(pr, c.seed + 7);
  ref::ScoreParams s;
  s.fn = ScoreFn::general;
  s.w = w.data();
  ref::attention_forward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                         pr.lse.data(), nullptr);
  Grads want = alloc(pr, 0.f);
  ref::attention_backward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                          pr.lse.data(), pr.dout.data(), want.dq.data(), want.dk.data(),
                          want.dv.data(), want.dw.data(), nullptr, nullptr, nullptr,
                          pr.p.bias ? want.dbias.data() : nullptr, nullptr);
  set_num_threads(threads);
  if (fused_forward)
    cpu::flash_attention_forward_general(pr.p, pr.q.data(), w.data(), pr.k.data(), pr.v.data(),
                                         pr.out.data(), pr.lse.data());
  Grads got = alloc(pr, std::nanf(""));  // NaN: an element never written fails
  cpu::general_attention_backward(pr.p, w.data(), pr.q.data(), pr.k.data(), pr.v.data(),
                                  pr.out.data(), pr.lse.data(), pr.dout.data(), got.dq.data(),
                                  got.dk.data(), got.dv.data(), got.dw.data(),
                                  pr.p.bias ? got.dbias.data() : nullptr);
  set_num_threads(1);
  test::expect_close(got.dq, want.dq, kTol, "dq");
  test::expect_close(got.dk, want.dk, kTol, "dk");
  test::expect_close(got.dv, want.dv, kTol, "dv");
  test::expect_close(got.dw, want.dw, kTol, "dw");
  test::expect_close(got.dbias, want.dbias, kTol, "dbias");
}

TEST(GeneralBackward, SizesAroundTheTiles) {
  for (int64_t n : {1, 7, 64, 65})
    for (auto [d, dk] : {std::pair<int64_t, int64_t>{1, 16}, {16, 1}, {63, 64}, {64, 80}, {128, 17}, {32, 256}}) {
      Case c;
      c.Nq = n, c.Nk = n + 2, c.D = d, c.Dk = dk, c.Dv = d == 1 ? 3 : d;
      check_case(c, 1);
    }
}

TEST(GeneralBackward, RandomisedShapesAndMasks) {
  Rng rng(2024);
  auto pick = [&](std::initializer_list<int64_t> xs) {
    const auto n = static_cast<uint64_t>(xs.size());
    return *(xs.begin() + static_cast<int64_t>(rng.next_u64() % n));
  };
  for (int trial = 0; trial < 12; ++trial) {
    Case c;
    c.seed = 100 + trial;
    c.B = pick({1, 2});
    c.Hkv = pick({1, 2});
    c.Hq = c.Hkv * pick({1, 2, 3});
    c.Nq = pick({1, 7, 63, 65, 130});
    c.Nk = pick({2, 64, 65, 200});
    c.D = pick({1, 16, 63, 80});
    c.Dk = pick({8, 64, 65});
    c.Dv = pick({5, 16, 64});
    switch (trial % 6) {
      case 0: break;
      case 1: c.causal = true, c.query_offset = pick({0, -5, 40}); break;
      case 2: c.window = true, c.window_left = pick({3, 30}), c.window_right = pick({0, 4}); break;
      case 3:
        // At least 2 keys (batch 1: none): with one visible key per row every dq, dk and dW
        // is exactly 0 and only its f32 noise would be compared (to an absolute 1e-5).
        c.key_lengths.resize(static_cast<size_t>(c.B));
        for (auto& l : c.key_lengths) l = static_cast<int32_t>(2 + rng.next_u64() % (c.Nk - 1));
        if (c.B > 1) c.key_lengths[1] = 0;
        break;
      case 4: c.bias = trial % 2 ? Case::Bias::full : Case::Bias::broadcast_rows; break;
      case 5: c.dropout = 0.2, c.causal = true; break;
    }
    c.strided = trial % 3 == 0;
    check_case(c, 1 + trial % 2);
  }
}

TEST(GeneralBackward, LongSequenceGqaStridedTwoThreads) {
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 130, c.Nk = 200, c.D = 24, c.Dk = 16, c.Dv = 12;
  c.causal = true, c.query_offset = 50, c.strided = true;
  check_case(c, 2);
  check_case(c, 2, true);  // out and lse from the fused general forward, as the API runs it
  c.causal = false, c.Hkv = 1, c.bias = Case::Bias::full, c.key_lengths = {200, 0};
  check_case(c, 2, true);
}

}  // namespace
}  // namespace attn
