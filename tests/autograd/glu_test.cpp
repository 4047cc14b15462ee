// ag::glu (fused GLU + residual + row mask): fused equals composed (split, sigmoid, mul, add,
// mul, mul) in values and gradients, central-difference gradients in double, f32 against f64
// above the threading threshold, argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "attn/autograd/glu.h"
#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::leaf;

// The same block from primitive ops: mask · scale · (a σ(b) + r), mask [..., 1].
Var glu_composed(const Var& h, const Var& r, double scale, const Tensor& mask) {
  const int64_t C = h.size(-1) / 2;
  std::vector<Var> ab = split(h, h.dim() - 1, {C, C});
  Var y = mul(ab[0], sigmoid(ab[1]));
  if (r.defined()) y = add(y, r);
  y = mul(y, scale);
  if (mask.defined()) y = mul(y, Var(mask, false));
  return y;
}

// [B, S, 1] mask: sequence b real for its first S - b steps; the last sequence's rows weighted
// 0.5 (the op takes any per-row weight, not only 0 / 1).
Tensor row_mask(int64_t B, int64_t S, DType dt) {
  Tensor m = Tensor::zeros({B, S, 1}, DType::f64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S - b; ++s) m.data<double>()[b * S + s] = b == B - 1 ? 0.5 : 1.0;
  return m.to(dt);
}

TEST(Glu, FusedEqualsComposedValuesAndGradients) {
  const int64_t B = 3, S = 4, C = 5;
  Rng rng(31, 0);
  Tensor h0 = random_tensor({B, S, 2 * C}, rng, -3, 3), r0 = random_tensor({B, S, C}, rng);
  Tensor dy = random_tensor({B, S, C}, rng);
  const Tensor m = row_mask(B, S, DType::f64);
  Var h1(h0.clone(), true), r1(r0.clone(), true), h2(h0.clone(), true), r2(r0.clone(), true);
  Var y1 = glu(h1, r1, std::sqrt(0.5), m);
  Var y2 = glu_composed(h2, r2, std::sqrt(0.5), m);
  ASSERT_EQ(y1.shape(), (Shape{B, S, C}));
  expect_close(y1.value(), y2.value(), 1e-14, 1e-14, "y");
  y1.backward(dy);
  y2.backward(dy);
  expect_close(h1.grad(), h2.grad(), 1e-14, 1e-14, "dh");
  expect_close(r1.grad(), r2.grad(), 1e-14, 1e-14, "dresidual");
  // Masked rows are exactly zero, and so are their gradients.
  EXPECT_EQ(y1.value().data<double>()[(1 * S + 3) * C], 0.0);
  EXPECT_EQ(h1.grad().data<double>()[(1 * S + 3) * 2 * C + C], 0.0);
}

TEST(Glu, GradcheckWithAndWithoutResidualAndMask) {
  Rng rng(32, 0);
  Var h = leaf({2, 3, 8}, rng, -2, 2), r = leaf({2, 3, 4}, rng);
  const Tensor m = row_mask(2, 3, DType::f64);
  expect_gradcheck([&] { return glu(h, r, 0.7, m); }, {h, r});
  expect_gradcheck([&] { return glu(h); }, {h});
  Var h2 = leaf({7, 6}, rng, -2, 2);  // 2-D: rows of a plain matrix
  expect_gradcheck([&] { return glu(h2, Var(), 1.5); }, {h2});
}

// Gradients accumulate when the residual is also an input of h's producer (as in the encoder).
TEST(Glu, GradientsAccumulateWhenResidualIsReused) {
  Rng rng(33, 0);
  Var x = leaf({2, 3, 4}, rng);
  expect_gradcheck([&] { return glu(concat({x, mul(x, 2.0)}, 2), x, std::sqrt(0.5), Tensor()); }, {x});
}

// f32 over the OpenMP threshold against the f64 composed block.
TEST(Glu, Float32MatchesDouble) {
  const int64_t B = 4, S = 33, C = 130;  // rows · 2C = 34,320 elements
  Rng rng(34, 0);
  Tensor h0 = random_tensor({B, S, 2 * C}, rng, -4, 4), r0 = random_tensor({B, S, C}, rng);
  Tensor dy = random_tensor({B, S, C}, rng);
  Var h32(h0.to(DType::f32), true), r32(r0.to(DType::f32), true), h64(h0.clone(), true), r64(r0.clone(), true);
  Var y32 = glu(h32, r32, std::sqrt(0.5), row_mask(B, S, DType::f32));
  Var y64 = glu_composed(h64, r64, std::sqrt(0.5), row_mask(B, S, DType::f64));
  expect_close(y32.value(), y64.value(), 1e-6, 1e-5, "y");
  y32.backward(dy.to(DType::f32));
  y64.backward(dy);
  expect_close(h32.grad(), h64.grad(), 1e-6, 1e-5, "dh");
  expect_close(r32.grad(), r64.grad(), 1e-6, 1e-5, "dresidual");
}

TEST(Glu, BadArgumentsThrowNamingTheShapes) {
  Rng rng(35, 0);
  Var h = leaf({2, 3, 6}, rng);
  auto message = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message([&] { glu(leaf({2, 3, 5}, rng)); });
  EXPECT_NE(m.find("glu: h [2, 3, 5]"), std::string::npos) << m;
  m = message([&] { glu(h, leaf({2, 3, 6}, rng)); });
  EXPECT_NE(m.find("residual [2, 3, 6] must be [2, 3, 3]"), std::string::npos) << m;
  m = message([&] { glu(h, Var(), 1.0, Tensor::zeros({2, 4, 1}, DType::f64)); });
  EXPECT_NE(m.find("row_mask [2, 4, 1]"), std::string::npos) << m;
  EXPECT_THROW(glu(h, Var(), 1.0, Tensor::zeros({2, 3, 1}, DType::f32)), Error);  // mask dtype differs
  EXPECT_THROW(glu(h, Var(random_tensor({2, 3, 3}, rng, -1, 1, DType::f32))), Error);  // residual dtype
}

}  // namespace
}  // namespace attn::ag
