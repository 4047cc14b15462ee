// ag::additive_score (Bahdanau's score v . tanh(k + q [+ extra]) fused): fused equals composed
// (add, tanh, linear) in values and gradients, central-difference gradients in double, and the
// accuracy of the f32 rational tanh it uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attn/autograd/additive_score.h"
#include "attn/autograd/gradcheck.h"
#include "attn/autograd/ops.h"

namespace attn::ag {
namespace {

// Fused = composed: values and gradients of additive_score against add / tanh / matmul.
TEST(AdditiveScore, MatchesComposedOps) {
  for (bool with_extra : {false, true}) {
    Rng rng(13, 0);
    Var k(random_tensor({2, 5, 4}, rng, -3, 3), true), q(random_tensor({2, 4}, rng, -3, 3), true);
    Var v(random_tensor({1, 4}, rng), true), x(random_tensor({2, 5, 4}, rng), true);
    Var extra = with_extra ? x : Var();
    Var fused = additive_score(k, q, v, extra);
    Var pre = add(k, reshape(q, {2, 1, 4}));
    if (with_extra) pre = add(pre, x);
    Var composed = reshape(linear(tanh(pre), v), {2, 5});
    ASSERT_EQ(fused.shape(), composed.shape());
    Tensor seed = random_tensor({2, 5}, rng);
    std::vector<Var> leaves = {k, q, v, x};
    std::vector<Tensor> g_fused, g_comp;
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& l : leaves) l.zero_grad();
      (pass == 0 ? fused : composed).backward(seed);
      for (auto& l : leaves) (pass == 0 ? g_fused : g_comp).push_back(l.grad().clone());
    }
    for (int64_t i = 0; i < 10; ++i)
      EXPECT_NEAR(fused.value().data<double>()[i], composed.value().data<double>()[i], 1e-14);
    for (size_t l = 0; l < leaves.size(); ++l) {
      ASSERT_EQ(g_fused[l].shape(), g_comp[l].shape());
      for (int64_t i = 0; i < g_fused[l].numel(); ++i)
        EXPECT_NEAR(g_fused[l].data<double>()[i], g_comp[l].data<double>()[i], 1e-13) << "leaf " << l << " at " << i;
    }
  }
}

TEST(AdditiveScore, GradcheckF64) {
  Rng rng(17, 0);
  Var k(random_tensor({2, 3, 4}, rng), true), q(random_tensor({2, 4}, rng), true);
  Var v(random_tensor({1, 4}, rng), true), x(random_tensor({2, 3, 4}, rng), true);
  GradcheckResult r = gradcheck([&] { return additive_score(k, q, v, x); }, {k, q, v, x});
  EXPECT_GT(r.checked, 0);
  EXPECT_TRUE(r.ok) << r.report;
}

// The f32 rational tanh stays within a few ulp of std::tanh over the whole range.
TEST(AdditiveScore, RationalTanhIsAccurate) {
  double max_err = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float x = static_cast<float>(i) * 1e-4f;
    max_err = std::max(max_err, std::abs(static_cast<double>(tanh_rational(x)) - std::tanh(static_cast<double>(x))));
  }
  EXPECT_LT(max_err, 5e-7);
  EXPECT_EQ(tanh_rational(50.f), tanh_rational(8.f));
  EXPECT_NEAR(tanh_rational(50.f), 1.0f, 1e-6f);
}

}  // namespace
}  // namespace attn::ag
