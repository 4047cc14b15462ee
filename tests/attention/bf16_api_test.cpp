// bf16 inputs through the public API: the automatic backend runs the bf16 kernel (the CPU's
// bf16 dot products, f32 accumulation) and must agree with the double reference on the same
// bf16-rounded inputs within the bf16 bound (1e-2 relative to the largest output).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "attn/attention/attention.h"
#include "attn/core/rng.h"

namespace attn {
namespace {

Tensor random_bf16(const Shape& s, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (float& x : v) x = static_cast<float>(rng.normal());
  return Tensor::from_vector(v, s).to(DType::bf16);
}

void expect_close(const Tensor& got, const Tensor& want, double rel) {
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<float> g = got.to_vector(), w = want.to_vector();
  double scale = 0, worst = 0;
  for (float x : w) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(double(g[i]) - w[i]));
  EXPECT_LE(worst, rel * std::max(scale, 1.0)) << "max |diff| " << worst << " scale " << scale;
}

TEST(AttentionBf16Api, AutomaticMatchesReferenceForEachDotScore) {
  Rng rng(7);
  const Tensor q = random_bf16({2, 4, 37, 64}, rng);
  const Tensor k = random_bf16({2, 2, 70, 64}, rng);
  const Tensor v = random_bf16({2, 2, 70, 48}, rng);
  for (ScoreFn fn : {ScoreFn::dot, ScoreFn::scaled_dot, ScoreFn::cosine}) {
    for (bool causal : {false, true}) {
      AttentionOptions o;
      o.score = fn;
      o.causal = causal;
      o.query_offset = causal ? 33 : 0;
      const AttentionOutput fast = attention_forward(q, k, v, {}, o);
      o.backend = AttentionBackend::reference;
      const AttentionOutput ref = attention_forward(q, k, v, {}, o);
      SCOPED_TRACE(std::string(score_fn_name(fn)) + (causal ? " causal" : ""));
      expect_close(fast.out, ref.out, 1e-2);
      expect_close(fast.lse, ref.lse, 1e-2);
    }
  }
}

TEST(AttentionBf16Api, StridedBf16InputsAreRead) {
  Rng rng(11);
  // k given as a transposed view of a [B, Nk, H, D] tensor.
  const Tensor q = random_bf16({1, 2, 9, 16}, rng);
  const Tensor k = random_bf16({1, 13, 2, 16}, rng).transpose(1, 2);
  const Tensor v = random_bf16({1, 2, 13, 16}, rng);
  AttentionOptions o;
  const AttentionOutput fast = attention_forward(q, k, v, {}, o);
  o.backend = AttentionBackend::reference;
  const AttentionOutput ref = attention_forward(q, k, v, {}, o);
  expect_close(fast.out, ref.out, 1e-2);
}

}  // namespace
}  // namespace attn
