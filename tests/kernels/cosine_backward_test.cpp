// The fused cosine backward (normalise q and k, fused dot backward, chain through the
// normalisation) against the double-precision reference backward: every mask, GQA, dropout,
// strided inputs, zero rows, 1 and 2 threads. Tolerance as in flash_backward_test.cpp
// (1e-5 of each gradient tensor's largest element); dtemperature, a sum over every
// (query, key) pair, to 1e-5 relative.
#include <gtest/gtest.h>

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
  std::vector<float> dq, dk, dv, dbias;
  double dtemperature = 0;
};

Grads alloc(const Problem& pr, float fill) {
  Grads g;
  g.dq.assign(pr.q.size(), fill);
  g.dk.assign(pr.k.size(), fill);
  g.dv.assign(pr.v.size(), fill);
  if (pr.p.bias) g.dbias.assign(static_cast<size_t>(pr.p.B * pr.p.Hq * pr.p.Nq * pr.p.Nk), fill);
  return g;
}

// Zeroes q row (0, 0, 0) and key row (0, 0, 0) when asked: their score is the constant 0.
void zero_rows(Problem& pr) {
  for (int64_t d = 0; d < pr.p.D; ++d) pr.q[d] = 0.f, pr.k[d] = 0.f;
}

void check_case(const Case& c, double temperature, int threads, bool with_zero_rows = false) {
  SCOPED_TRACE(::testing::Message() << c.name() << " T " << temperature << " threads " << threads
                                    << (with_zero_rows ? " zero rows" : ""));
  Problem pr(c);
  if (with_zero_rows) zero_rows(pr);
  ASSERT_TRUE(cpu::flash_attention_backward_supports(pr.p));
  ref::ScoreParams s;
  s.fn = ScoreFn::cosine;
  s.temperature = temperature;
  ref::attention_forward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                         pr.lse.data(), nullptr);
  Grads want = alloc(pr, 0.f);
  ref::attention_backward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                          pr.lse.data(), pr.dout.data(), want.dq.data(), want.dk.data(),
                          want.dv.data(), nullptr, nullptr, nullptr, nullptr,
                          pr.p.bias ? want.dbias.data() : nullptr, &want.dtemperature);
  Grads got = alloc(pr, std::nanf(""));  // NaN: an element never written fails
  set_num_threads(threads);
  cpu::cosine_attention_backward(pr.p, temperature, pr.q.data(), pr.k.data(), pr.v.data(),
                                 pr.out.data(), pr.lse.data(), pr.dout.data(), got.dq.data(),
                                 got.dk.data(), got.dv.data(),
                                 pr.p.bias ? got.dbias.data() : nullptr, &got.dtemperature);
  set_num_threads(1);
  test::expect_close(got.dq, want.dq, kTol, "dq");
  test::expect_close(got.dk, want.dk, kTol, "dk");
  test::expect_close(got.dv, want.dv, kTol, "dv");
  test::expect_close(got.dbias, want.dbias, kTol, "dbias");
  // With D = 1 every cosine is ±1 and dT can be exactly 0 (Σ_j dS_ij = 0); else it is not.
  if (pr.p.D > 1) {
    EXPECT_NE(want.dtemperature, 0.0);
  }
  EXPECT_NEAR(got.dtemperature, want.dtemperature, kTol * std::fabs(want.dtemperature) + 1e-7);
  if (with_zero_rows) {  // the zero rows get exactly zero gradient, as in the reference
    for (int64_t d = 0; d < pr.p.D; ++d) {
      EXPECT_EQ(got.dq[d], 0.f);
      EXPECT_EQ(got.dk[d], 0.f);
    }
  }
}

TEST(CosineBackward, SizesAroundTheTiles) {
  for (int64_t n : {1, 7, 64, 65})
    for (int64_t d : {1, 16, 63, 64, 128}) {
      Case c;
      c.Nq = n, c.Nk = n + 3, c.D = d;
      check_case(c, 0.5, 1);
    }
}

TEST(CosineBackward, ZeroRowsHaveZeroGradient) {
  Case c;
  c.Hq = 2, c.Nq = 20, c.Nk = 30, c.D = 16;
  check_case(c, 0.25, 1, true);
  check_case(c, 0.25, 2, true);
}

TEST(CosineBackward, MasksGqaAndThreads) {
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 70, c.Nk = 90, c.D = 32, c.causal = true, c.query_offset = 20;
  for (int t : {1, 2}) check_case(c, 0.1, t);
  c.causal = false, c.window = true, c.window_left = 15, c.window_right = 4;
  check_case(c, 1.0, 2);
  c.window = false, c.key_lengths = {90, 0};  // batch 1 sees no key
  check_case(c, 2.0, 2);
  c.key_lengths.clear(), c.bias = Case::Bias::full, c.Hkv = 1;  // multi-query, bias
  check_case(c, 0.3, 2);
  c.bias = Case::Bias::broadcast_rows, c.dropout = 0.2;
  check_case(c, 0.3, 1);
}

TEST(CosineBackward, StridedInputs) {
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 65, c.Nk = 70, c.D = 63, c.Dv = 20, c.strided = true;
  check_case(c, 0.2, 1);
  check_case(c, 0.2, 2);
}

}  // namespace
}  // namespace attn
