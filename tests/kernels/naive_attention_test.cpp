// The naive materialised attention (the benchmark baseline) against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention_test_util.h"
#include "attn/core/error.h"
#include "attn/kernels/cpu/naive_attention.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using test::Case;
using test::Problem;

void check_case(const Case& c) {
  SCOPED_TRACE(c.name());
  Problem pr(c);
  ref::ScoreParams s;
  ref::attention_forward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                         pr.lse.data(), nullptr);
  std::vector<float> out(pr.out.size(), std::nanf("")), lse(pr.lse.size(), std::nanf(""));
  cpu::naive_attention_forward(pr.p, pr.q.data(), pr.k.data(), pr.v.data(), out.data(), lse.data());
  test::expect_close(out, pr.out, 1e-5, "out");
  test::expect_close(lse, pr.lse, 1e-5, "lse");

  std::vector<float> dq_ref(pr.q.size()), dk_ref(pr.k.size()), dv_ref(pr.v.size());
  ref::attention_backward(pr.p, s, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                          pr.lse.data(), pr.dout.data(), dq_ref.data(), dk_ref.data(),
                          dv_ref.data(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  std::vector<float> dq(pr.q.size()), dk(pr.k.size()), dv(pr.v.size());
  cpu::naive_attention_backward(pr.p, pr.q.data(), pr.k.data(), pr.v.data(), pr.out.data(),
                                pr.lse.data(), pr.dout.data(), dq.data(), dk.data(), dv.data());
  test::expect_close(dq, dq_ref, 1e-5, "dq");
  test::expect_close(dk, dk_ref, 1e-5, "dk");
  test::expect_close(dv, dv_ref, 1e-5, "dv");
}

TEST(NaiveAttention, MatchesReference) {
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 33, c.Nk = 47, c.D = 20;
  check_case(c);
  c.causal = true, c.query_offset = 5;
  check_case(c);
  c.strided = true, c.Hkv = 1;
  check_case(c);
}

TEST(NaiveAttention, RejectsOtherMasks) {
  Case c;
  c.Nq = 4, c.Nk = 4, c.D = 2, c.window = true;
  Problem pr(c);
  EXPECT_THROW(cpu::naive_attention_forward(pr.p, pr.q.data(), pr.k.data(), pr.v.data(),
                                            pr.out.data(), pr.lse.data()),
               Error);
}

}  // namespace
}  // namespace attn
