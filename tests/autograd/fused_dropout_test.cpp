// dropout_add, relu_dropout and linear_relu_dropout: gradient checks (f64, the definition) and the fused f32 path
// against the composition it replaces — the same masks, values and gradients, also when the
// inputs share a node or already hold a gradient. Not bit for bit: on FMA targets the compiler
// contracts res + x·m into one fused multiply-add (one rounding instead of two), so values
// agree to 1 ulp and gradients downstream of them to a few.
#include <gtest/gtest.h>

#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;

// 1-2 ulp of values of order 1 (see above); a wrong mask or a missed accumulation is O(1) off.
void expect_same(const Tensor& a, const Tensor& b, const std::string& what) {
  expect_close(a, b, 1e-6, 1e-6, what);
}

TEST(FusedDropout, GradcheckF64) {
  Rng rng(51);
  Var r = testing::leaf({3, 5}, rng), x = testing::leaf({3, 5}, rng);
  ASSERT_EQ(dropout_add(r, x, 0.3, 9, 4).shape(), (Shape{3, 5}));
  expect_gradcheck([&] { return dropout_add(r, x, 0.3, 9, 4); }, {r, x});
  // Keep x away from the ReLU kink, where the central difference is not the derivative.
  Tensor xt = random_tensor({4, 6}, rng, 0.1, 1.0, DType::f64);
  for (int64_t i = 0; i < xt.numel(); i += 2) xt.data<double>()[i] = -xt.data<double>()[i];
  Var xr(xt, true);
  expect_gradcheck([&] { return relu_dropout(xr, 0.4, 11, 2); }, {xr});
}

struct Case {
  const char* name;
  bool shared;     // dropout_add(a, a): residual and x are one node
  bool extra_use;  // the inputs also feed another op (their gradient buffers already exist)
};

TEST(FusedDropout, F32EqualsComposed) {
  const Case cases[] = {{"plain", false, false}, {"shared", true, false}, {"extra_use", false, true},
                        {"shared_extra_use", true, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Rng rng(53);
    // 40000 elements: more than one block of the threaded loops.
    const Shape s{100, 400};
    Tensor rt = random_tensor(s, rng, -1, 1, DType::f32), xt = random_tensor(s, rng, -1, 1, DType::f32);
    Tensor seed = random_tensor(s, rng, -1, 1, DType::f32);
    auto run = [&](bool fused, Var* r, Var* x) {
      *r = Var(rt.clone(), true);
      *x = c.shared ? *r : Var(xt.clone(), true);
      Var r2 = *r * 1.0, x2 = c.shared ? r2 : *x * 1.0;  // non-leaf inputs, as in a model
      Var y = fused ? dropout_add(r2, x2, 0.2, 5, 17) : add(r2, dropout(x2, 0.2, 5, 17));
      Var z = fused ? relu_dropout(y, 0.3, 6, 3) : dropout(relu(y), 0.3, 6, 3);
      Var out = c.extra_use ? z + y * 0.5 + x2 * 0.25 : z;
      out.backward(seed);
      return std::make_pair(y.value(), z.value());
    };
    Var fr, fx, cr, cx;
    auto [fy, fz] = run(true, &fr, &fx);
    auto [cy, cz] = run(false, &cr, &cx);
    expect_same(fy, cy, "dropout_add value");
    expect_same(fz, cz, "relu_dropout value");
    expect_same(fr.grad(), cr.grad(), "d residual");
    if (!c.shared) expect_same(fx.grad(), cx.grad(), "d x");
  }
}

TEST(FusedDropout, LinearReluDropoutGradcheckF64) {
  Rng rng(55);
  Var x = testing::leaf({2, 3, 4}, rng), w = testing::leaf({5, 4}, rng), b = testing::leaf({5}, rng);
  ASSERT_EQ(linear_relu_dropout(x, w, b, 0.3, 8, 1).shape(), (Shape{2, 3, 5}));
  expect_gradcheck([&] { return linear_relu_dropout(x, w, b, 0.3, 8, 1); }, {x, w, b});
}

// The fused f32 op against dropout(relu(linear(x, w, b))): the same GEMMs, the same mask and
// the same per-column bias sums, so values and gradients agree to the last bit.
TEST(FusedDropout, LinearReluDropoutF32EqualsComposed) {
  for (bool bias_grad : {true, false}) {
    SCOPED_TRACE(bias_grad ? "bias with grad" : "bias without grad");
    Rng rng(57);
    const int64_t B = 3, N = 50, in = 24, out = 300;  // 45000 outputs: threaded loops
    Tensor xt = random_tensor({B, N, in}, rng, -1, 1, DType::f32), wt = random_tensor({out, in}, rng, -0.3, 0.3, DType::f32),
           bt = random_tensor({out}, rng, -0.3, 0.3, DType::f32), seed = random_tensor({B, N, out}, rng, -1, 1, DType::f32);
    auto run = [&](bool fused, Var* x, Var* w, Var* b) {
      *x = Var(xt.clone(), true);
      *w = Var(wt.clone(), true);
      *b = Var(bt.clone(), bias_grad);
      Var y = fused ? linear_relu_dropout(*x, *w, *b, 0.25, 21, 1000) : dropout(relu(linear(*x, *w, *b)), 0.25, 21, 1000);
      y.backward(seed);
      return y.value();
    };
    Var fx, fw, fb, cx, cw, cb;
    const Tensor fy = run(true, &fx, &fw, &fb), cy = run(false, &cx, &cw, &cb);
    expect_close(fy, cy, 0, 0, "value");
    expect_close(fx.grad(), cx.grad(), 0, 0, "dx");
    expect_close(fw.grad(), cw.grad(), 0, 0, "dw");
    if (bias_grad) expect_close(fb.grad(), cb.grad(), 0, 0, "db");
    else EXPECT_FALSE(fb.grad().defined());
  }
}

TEST(FusedDropout, RateZeroAndErrors) {
  Var a(Tensor::from_vector({1.f, -2.f}, {2}), true), b(Tensor::from_vector({3.f, 4.f}, {2}), true);
  EXPECT_EQ(dropout_add(a, b, 0.0, 1).value().to_vector(), (std::vector<float>{4.f, 2.f}));
  EXPECT_EQ(relu_dropout(a, 0.0, 1).value().to_vector(), (std::vector<float>{1.f, 0.f}));
  Var c(Tensor::zeros({3}), true);
  try {
    dropout_add(a, c, 0.1, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dropout_add: residual [2] and x [3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(relu_dropout(a, 1.0, 1), Error);
  Var x(Tensor::zeros({2, 4}), true), w(Tensor::zeros({3, 4}), true), bias(Tensor::zeros({2}), true);
  try {
    linear_relu_dropout(x, w, bias, 0.1, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear_relu_dropout: input [2, 4], weight [3, 4] and bias [2]"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace attn::ag
