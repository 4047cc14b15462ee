// Attention dropout: reproducible from the seed, keeps about 1 - p of the weights, scales the
// kept ones by 1 / (1 - p) so the output is unbiased, and leaves lse undropped.
#include <gtest/gtest.h>

#include "attention/attention_test_util.h"

namespace attn {
namespace {

using test::random_tensor;

struct Inputs {
  Tensor q, k, v;
};

Inputs make(int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t D) {
  return {random_tensor({B, H, Nq, D}, 1), random_tensor({B, H, Nk, D}, 2),
          random_tensor({B, H, Nk, D}, 3)};
}

AttentionOptions dropout_opts(double p, uint64_t seed) {
  AttentionOptions o;
  o.dropout = p;
  o.seed = seed;
  o.need_weights = true;
  return o;
}

TEST(AttentionDropout, SameSeedSameOutputOtherSeedDifferent) {
  Inputs in = make(2, 2, 9, 11, 4);
  AttentionOutput a = attention_forward(in.q, in.k, in.v, {}, dropout_opts(0.4, 7));
  AttentionOutput b = attention_forward(in.q, in.k, in.v, {}, dropout_opts(0.4, 7));
  AttentionOutput c = attention_forward(in.q, in.k, in.v, {}, dropout_opts(0.4, 8));
  ASSERT_EQ(a.out.shape(), b.out.shape());
  EXPECT_EQ(a.out.to_vector(), b.out.to_vector());
  EXPECT_EQ(a.weights.to_vector(), b.weights.to_vector());
  EXPECT_NE(a.out.to_vector(), c.out.to_vector());
  EXPECT_NE(a.weights.to_vector(), c.weights.to_vector());
}

TEST(AttentionDropout, KeptWeightsAreScaledSoftmaxAndLseIsUndropped) {
  Inputs in = make(2, 2, 9, 11, 4);
  const double p = 0.4;
  AttentionOutput d = attention_forward(in.q, in.k, in.v, {}, dropout_opts(p, 3));
  AttentionOutput u = attention_forward(in.q, in.k, in.v, {}, dropout_opts(0.0, 3));
  ASSERT_EQ(d.weights.shape(), u.weights.shape());
  EXPECT_EQ(d.lse.to_vector(), u.lse.to_vector());
  std::vector<float> wd = d.weights.to_vector(), wu = u.weights.to_vector();
  int kept = 0;
  for (size_t n = 0; n < wd.size(); ++n) {
    if (wd[n] == 0.f) continue;
    ++kept;
    EXPECT_NEAR(wd[n], wu[n] / (1 - p), 1e-6 * wu[n] / (1 - p)) << n;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, static_cast<int>(wd.size()));
}

TEST(AttentionDropout, KeptFractionIsOneMinusP) {
  Inputs in = make(1, 2, 128, 128, 2);
  for (double p : {0.1, 0.5, 0.8}) {
    AttentionOutput o = attention_forward(in.q, in.k, in.v, {}, dropout_opts(p, 11));
    std::vector<float> w = o.weights.to_vector();
    ASSERT_EQ(w.size(), 2u * 128 * 128);
    double kept = 0;
    for (float x : w) kept += x != 0.f;
    const double frac = kept / static_cast<double>(w.size());
    // 32768 Bernoulli draws: the standard deviation of the fraction is <= 0.0028.
    EXPECT_NEAR(frac, 1 - p, 0.012) << "p = " << p;
  }
}

TEST(AttentionDropout, OutputIsUnbiased) {
  // q = 0 makes every weight 1 / Nk; v = 1 makes out = mean_j keep_j / (1 - p), whose
  // expectation is exactly 1.
  const int64_t B = 2, H = 4, Nq = 64, Nk = 64;
  Tensor q = Tensor::zeros({B, H, Nq, 2}), k = random_tensor({B, H, Nk, 2}, 5);
  Tensor v = Tensor::full({B, H, Nk, 1}, 1.f);
  const double p = 0.3;
  AttentionOptions o = dropout_opts(p, 17);
  o.need_weights = false;
  AttentionOutput r = attention_forward(q, k, v, {}, o);
  ASSERT_EQ(r.out.shape(), (Shape{B, H, Nq, 1}));
  double mean = 0;
  for (float x : r.out.to_vector()) mean += x;
  mean /= static_cast<double>(B * H * Nq);
  // Mean of 32768 draws of keep / (1 - p): standard deviation sqrt(p / (1 - p) / n) = 0.0036.
  EXPECT_NEAR(mean, 1.0, 0.015);
  // Without dropout the same setup gives exactly 1 (up to rounding).
  o.dropout = 0;
  r = attention_forward(q, k, v, {}, o);
  for (float x : r.out.to_vector()) EXPECT_NEAR(x, 1.0, 1e-6);
}

TEST(AttentionDropout, MaskFollowsTheSharedCounterRng) {
  // The keep decision is attn::dropout_keep(seed, p, b, h, i, j, Hq, Nq, Nk): the same on
  // every code path, so fused kernels can reproduce it.
  Inputs in = make(2, 3, 5, 6, 3);
  const double p = 0.5;
  AttentionOutput o = attention_forward(in.q, in.k, in.v, {}, dropout_opts(p, 99));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 6; ++j)
          EXPECT_EQ(o.weights.get({b, h, i, j}) != 0.f, dropout_keep(99, p, b, h, i, j, 3, 5, 6));
}

}  // namespace
}  // namespace attn
