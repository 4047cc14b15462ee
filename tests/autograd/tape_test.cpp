// The tape itself: accumulation, topological order, no-grad scopes, f64 tensors.
#include <gtest/gtest.h>

#include "test_util.h"

namespace attn::ag {
namespace {

using testing::leaf;

TEST(Tensor64, CopyKeepsDoublePrecision) {
  Tensor t = Tensor::empty({3}, DType::f64);
  t.data<double>()[0] = 1.0 + 1e-12;
  t.data<double>()[1] = -2.5;
  t.data<double>()[2] = 1e-300;
  Tensor c = t.transpose(0, 0).clone();
  Tensor s = t.slice(0, 0, 2).to(DType::f32).to(DType::f64);
  EXPECT_EQ(c.dtype(), DType::f64);
  EXPECT_EQ(c.data<double>()[0], 1.0 + 1e-12);
  EXPECT_EQ(c.data<double>()[2], 1e-300);
  EXPECT_EQ(s.data<double>()[0], 1.0);  // through f32: rounded
  EXPECT_EQ(std::string(dtype_name(DType::f64)), "f64");
  EXPECT_EQ(dtype_size(DType::f64), 8u);
}

TEST(Tape, GradientsAccumulateOverUses) {
  // y = x*x + 3x  ->  dy/dx = 2x + 3, with x used three times.
  Var x(Tensor::from_vector({2.f, -1.f}, {2}), true);
  Var y = sum(x * x + x * 3.0);
  y.backward();
  ASSERT_EQ(x.grad().shape(), (Shape{2}));
  EXPECT_FLOAT_EQ(x.grad().get({0}), 7.f);
  EXPECT_FLOAT_EQ(x.grad().get({1}), 1.f);
  // A second graph adds to the same leaf grad; zero_grad resets.
  sum(x).backward();
  EXPECT_FLOAT_EQ(x.grad().get({0}), 8.f);
  x.zero_grad();
  EXPECT_FLOAT_EQ(x.grad().get({0}), 0.f);
}

TEST(Tape, DiamondGraphRunsEachNodeOnce) {
  // a = 2x; b = a*a; c = a + b; dc/dx = 2 + 2*(2a)*... = 2 + 8x
  Var x(Tensor::from_vector({1.5f}, {1}), true);
  Var a = x * 2.0;
  Var c = sum(a + a * a);
  c.backward();
  EXPECT_FLOAT_EQ(x.grad().get({0}), 2.f + 8.f * 1.5f);
}

TEST(Tape, NoGradGuardRecordsNothing) {
  Var x(Tensor::from_vector({1.f}, {1}), true);
  {
    NoGradGuard g;
    EXPECT_FALSE(grad_enabled());
    Var y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.node()->inputs.empty());
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE((x * 2.0).requires_grad());
  Var z(Tensor::from_vector({1.f}, {1}), false);
  EXPECT_FALSE((z * 2.0).requires_grad());
}

TEST(Tape, BackwardNeedsScalarOrSeed) {
  Var x(Tensor::from_vector({1.f, 2.f}, {2}), true);
  Var y = x * 3.0;
  EXPECT_THROW(y.backward(), Error);
  EXPECT_THROW(y.backward(Tensor::zeros({3})), Error);
  y.backward(Tensor::from_vector({1.f, 10.f}, {2}));
  EXPECT_FLOAT_EQ(x.grad().get({1}), 30.f);
}

TEST(Tape, DeepChainDoesNotOverflowTheStack) {
  Var x(Tensor::from_vector({1.f}, {1}), true);
  Var y = x;
  for (int i = 0; i < 20000; ++i) y = y + 1.0;
  sum(y).backward();
  EXPECT_FLOAT_EQ(x.grad().get({0}), 1.f);
}

TEST(Tape, MixedDtypesAreAnError) {
  Rng rng(1);
  Var a = leaf({2}, rng);
  Var b(Tensor::zeros({2}), true);
  try {
    (void)add(a, b);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos) << e.what();
  }
}

TEST(Gradcheck, CatchesAWrongGradient) {
  // A deliberately wrong backward (grad of x*x claimed as x) must be reported.
  Rng rng(2);
  Var x = leaf({3}, rng);
  auto wrong = [&]() {
    Tensor v = x.value();
    Tensor out = Tensor::empty(v.shape(), DType::f64);
    for (int64_t i = 0; i < 3; ++i) out.data<double>()[i] = v.data<double>()[i] * v.data<double>()[i];
    Var y(std::make_shared<Node>());
    y.node()->value = out;
    y.node()->requires_grad = true;
    y.node()->inputs = {x.node_ptr()};
    y.node()->op = "wrong_square";
    y.node()->backward = [v](Node& self) {
      Tensor& g = self.inputs[0]->grad;
      for (int64_t i = 0; i < 3; ++i) g.data<double>()[i] += self.grad.data<double>()[i] * v.data<double>()[i];
    };
    return y;
  };
  GradcheckResult r = gradcheck(wrong, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("element"), std::string::npos);
}

}  // namespace
}  // namespace attn::ag
