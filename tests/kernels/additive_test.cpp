// The blocked additive (Bahdanau) kernel, forward and backward, against the double-precision
// reference: masks, GQA, dropout, strided inputs, Dk ≠ D, 1 and 2 threads, every SIMD target.
//
// Tolerance: 1e-5 · max|ref| per tensor, as in flash_backward_test.cpp. The tanh terms add
// Highway's Tanh error (a few ulp) to each of the A terms of a score; the sums over keys and
// queries behave as in the dot-product kernel.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <vector>

#include "attention_test_util.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/cpu/additive_attention.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::Case;
using test::Problem;

constexpr double kTol = 1e-5;

struct Weights {
  std::vector<float> wq, wk, va;
  int64_t A;
  Weights(int64_t A_, int64_t D, int64_t Dk, uint64_t seed) : A(A_) {
    Rng rng(seed);
    auto fill = [&](std::vector<float>& x, int64_t n, double sd) {
      x.resize(static_cast<size_t>(n));
      for (float& e : x) e = static_cast<float>(rng.normal() * sd);
    };
    fill(wq, A * D, 1.0 / std::sqrt(static_cast<double>(D)));
    fill(wk, A * Dk, 1.0 / std::sqrt(static_cast<double>(Dk)));
    fill(va, A, 1.0);
  }
  ref::ScoreParams ref_params() const {
    ref::ScoreParams s;
    s.fn = ScoreFn::additive;
    s.wq = wq.data(), s.wk = wk.data(), s.va = va.data(), s.A = A;
    return s;
  }
  cpu::AdditiveWeights cpu_weights() const { return {wq.data(), wk.data(), va.data(), A}; }
};

void check_problem(const Case& c, Problem& pr, int64_t A, int threads) {
  const Weights w(A, pr.p.D, pr.p.Dk, c.seed + 7);
  const ref::ScoreParams s = w.ref_params();
  const float nan = std::nanf("");

  // Forward.
  std::vector<float> out_ref(pr.out.size()), lse_ref(pr.lse.size());
  ref::attention_forward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), out_ref.data(),
                         lse_ref.data(), nullptr);
  std::vector<float> out(pr.out.size(), nan), lse(pr.lse.size(), nan);
  set_num_threads(threads);
  cpu::additive_attention_forward(pr.p, w.cpu_weights(), pr.q.data(), pr.k.data(), pr.v.data(),
                                  out.data(), lse.data());
  set_num_threads(1);
  test::expect_close(out, out_ref, kTol, "out");
  ASSERT_EQ(lse.size(), lse_ref.size());
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse_ref[i])) {
      EXPECT_EQ(lse[i], lse_ref[i]) << "lse[" << i << "]";
    } else {
      EXPECT_NEAR(lse[i], lse_ref[i], 1e-5 * std::max(1.f, std::fabs(lse_ref[i]))) << "lse[" << i << "]";
    }
  }

  // Backward from the reference's out and lse.
  const int64_t D = pr.p.D, Dk = pr.p.Dk;
  std::vector<float> dq_ref(pr.q.size()), dk_ref(pr.k.size()), dv_ref(pr.v.size()),
      dwq_ref(A * D), dwk_ref(A * Dk), dva_ref(A), dbias_ref;
  const size_t n_scores = static_cast<size_t>(pr.p.B * pr.p.Hq * pr.p.Nq * pr.p.Nk);
  if (pr.p.bias) dbias_ref.assign(n_scores, 0.f);
  ref::attention_backward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), out_ref.data(),
                          lse_ref.data(), pr.dout.data(), dq_ref.data(), dk_ref.data(),
                          dv_ref.data(), nullptr, dwq_ref.data(), dwk_ref.data(), dva_ref.data(),
                          pr.p.bias ? dbias_ref.data() : nullptr, nullptr);
  std::vector<float> dq(pr.q.size(), nan), dk(pr.k.size(), nan), dv(pr.v.size(), nan),
      dwq(A * D, nan), dwk(A * Dk, nan), dva(A, nan), dbias;
  if (pr.p.bias) dbias.assign(n_scores, nan);
  set_num_threads(threads);
  cpu::additive_attention_backward(pr.p, w.cpu_weights(), pr.q.data(), pr.k.data(), pr.v.data(),
                                   out_ref.data(), lse_ref.data(), pr.dout.data(), dq.data(),
                                   dk.data(), dv.data(), dwq.data(), dwk.data(), dva.data(),
                                   pr.p.bias ? dbias.data() : nullptr);
  set_num_threads(1);
  test::expect_close(dq, dq_ref, kTol, "dq");
  test::expect_close(dk, dk_ref, kTol, "dk");
  test::expect_close(dv, dv_ref, kTol, "dv");
  test::expect_close(dwq, dwq_ref, kTol, "dwq");
  test::expect_close(dwk, dwk_ref, kTol, "dwk");
  test::expect_close(dva, dva_ref, kTol, "dva");
  test::expect_close(dbias, dbias_ref, kTol, "dbias");
}

void check_case(const Case& c, int64_t A, int threads = 1) {
  SCOPED_TRACE(::testing::Message() << c.name() << " A" << A << " threads " << threads);
  Problem pr(c);
  check_problem(c, pr, A, threads);
}

Case additive_case(int64_t nq, int64_t nk, int64_t d) {
  Case c;
  c.Nq = nq, c.Nk = nk, c.D = d, c.scale = 1.0;
  return c;
}

TEST(AdditiveAttention, SizesAroundTheTiles) {
  for (int64_t n : {1, 2, 7, 63, 64, 65})
    for (int64_t d : {1, 16, 63}) check_case(additive_case(n, n, d), 16);
  check_case(additive_case(65, 65, 128), 33);
  check_case(additive_case(3, 5, 256), 8);
}

TEST(AdditiveAttention, LongSequence) {
  Case c = additive_case(1000, 300, 4);
  c.causal = true, c.query_offset = -100;
  check_case(c, 8, 2);
}

TEST(AdditiveAttention, KeyDimDiffersAndGroupedHeads) {
  Case c = additive_case(70, 90, 16);
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Dk = 24, c.Dv = 20;
  check_case(c, 12, 2);
  c.Hkv = 1;
  check_case(c, 12);
}

TEST(AdditiveAttention, EveryMask) {
  Case c = additive_case(70, 130, 8);
  c.B = 3, c.Hq = 2, c.Hkv = 1;
  c.causal = true, c.query_offset = 40;
  check_case(c, 8);
  c.causal = false, c.window = true, c.window_left = 10, c.window_right = 30;
  check_case(c, 8, 2);
  c.window = false, c.key_lengths = {130, 64, 0};
  check_case(c, 8, 2);
  c.key_lengths.clear(), c.bias = Case::Bias::full;
  check_case(c, 8);
  c.bias = Case::Bias::broadcast_rows;
  check_case(c, 8);
}

TEST(AdditiveAttention, DropoutAndStrides) {
  Case c = additive_case(66, 70, 16);
  c.B = 2, c.Hq = 2, c.Hkv = 2, c.dropout = 0.25, c.strided = true;
  check_case(c, 8, 2);
}

// Rows whose |lse| ≥ 128 get P from the backward's own row max and sum (a pre-pass), the
// others from lse. Every 5th query row has S added to the bias on keys j % 3 == 0, and those
// keys share one k row, so their scores tie exactly in f32 and in the double reference (with
// distinct k the reference would resolve S + O(1) where f32 cannot). Both kinds of rows share
// query blocks; 3 query blocks, causal, 2 threads. With exp(s − lse) the backward was off by
// ~1e-3 at S = 1e4 and gave each tied key P = 1 at 1e10.
TEST(AdditiveAttention, HugeLogitRowsBesideOrdinaryOnes) {
  for (double S : {1e4, 1e10, 1e30}) {
    Case c = additive_case(150, 140, 16);
    c.Hq = 2, c.Hkv = 1, c.bias = Case::Bias::full, c.causal = true, c.query_offset = 10;
    SCOPED_TRACE(::testing::Message() << "S " << S);
    Problem pr(c);
    for (int64_t j = 3; j < c.Nk; j += 3)
      for (int64_t d = 0; d < c.D; ++d) pr.k[j * c.D + d] = pr.k[d];
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; i += 5)
        for (int64_t j = 0; j < c.Nk; j += 3) {
          float& e = pr.bias[(h * c.Nq + i) * c.Nk + j];
          e = (std::isinf(e) ? 0.f : e) + static_cast<float>(S);  // no longer hidden by the bias
        }
    check_problem(c, pr, 8, 2);
  }
}

TEST(AdditiveAttention, EverySimdTarget) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    SCOPED_TRACE(hwy::TargetName(t));
    hwy::SetSupportedTargetsForTest(t);
    Case c = additive_case(67, 70, 9);
    c.Hq = 2, c.Hkv = 1, c.causal = true, c.key_lengths = {60};
    check_case(c, 5, 2);
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace attn
