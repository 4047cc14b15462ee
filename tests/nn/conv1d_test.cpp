// nn::Conv1d: torch.nn.Conv1d parity (outputs, input and parameter gradients from the
// conv1d / conv1d_valid fixtures), torch's default init bounds, state_dict names, "same"
// padding, gradient check in f64, constructor errors.
//
// Parity tolerance as in parity_test.cpp (atol 1e-5 + rtol 1e-5 |expected|): both sides are
// f32 sums of at most 15 products of O(1) values in different orders.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "attn/autograd/ops.h"
#include "attn/nn/conv1d.h"
#include "common/fixtures.h"
#include "nn_util.h"

namespace attn::nn {
namespace {

using attn::testing::load_fixture;
using attn::testing::tensors_close;

void run_parity(const std::string& fixture) {
  auto f = load_fixture(fixture);
  auto c = nlohmann::json::parse(f.meta("config"));
  Rng rng(0);
  Conv1d m(c["in_channels"], c["out_channels"], c["kernel_size"], rng, c["padding"], c["dilation"], c["bias"]);
  ASSERT_EQ(testing::names(m), (std::vector<std::string>{"weight", "bias"}));
  for (NamedParam& p : m.named_parameters()) {
    const Tensor& t = f.at("param." + p.name);
    ASSERT_EQ(p.value.shape(), t.shape()) << p.name;
    p.value.copy_from(t);
  }
  m.zero_grad();
  Var x(f.at("input.x").clone(), true);
  Var y = m.forward(x);
  EXPECT_TRUE(tensors_close(y.value(), f.at("output.y"), 1e-5, 1e-5, fixture + " output.y"));
  ag::sum(ag::mul(y, Var(f.at("input.grad_weight.y")))).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(tensors_close(x.grad(), f.at("grad.input.x"), 1e-5, 1e-5, fixture + " grad.input.x"));
  for (const NamedParam& p : m.named_parameters())
    EXPECT_TRUE(tensors_close(p.grad, f.at("grad.param." + p.name), 1e-5, 1e-5, fixture + " grad.param." + p.name));
}

TEST(Conv1dParity, PaddedDilated) { run_parity("conv1d"); }
TEST(Conv1dParity, ValidShorterOutput) { run_parity("conv1d_valid"); }

// kaiming_uniform_(a=√5) and the bias both give U(±1/√(in·K)): every value inside the bound,
// and the extremes close to it (2000 draws).
TEST(Conv1d, DefaultInitIsTorchs) {
  Rng rng(5, 0);
  Conv1d m(20, 10, 5, rng);
  const double bound = 1.0 / std::sqrt(100.0);
  ASSERT_EQ(m.weight.shape(), (Shape{10, 20, 5}));
  ASSERT_EQ(m.bias.shape(), (Shape{10}));
  double lo = 1, hi = -1;
  for (float v : m.weight.value().to_vector()) {
    EXPECT_LE(std::abs(v), bound);
    lo = std::min(lo, static_cast<double>(v));
    hi = std::max(hi, static_cast<double>(v));
  }
  EXPECT_LT(lo, -0.95 * bound);
  EXPECT_GT(hi, 0.95 * bound);
  for (float v : m.bias.value().to_vector()) EXPECT_LE(std::abs(v), bound);
}

TEST(Conv1d, SamePaddingKeepsLengthAndGradchecks) {
  for (int64_t dil : {1, 2}) {
    Rng rng(6, 0);
    Conv1d m(3, 2, 5, rng, /*padding=*/-1, dil);
    EXPECT_EQ(m.padding, 2 * dil);
    m.to(DType::f64);
    Var x = testing::leaf({2, 6, 3}, rng);
    Var y = m.forward(x);
    ASSERT_EQ(y.shape(), (Shape{2, 6, 2}));
    testing::expect_gradcheck([&] { return m.forward(x); }, testing::with({x}, m.parameters()));
  }
  Rng rng(7, 0);
  Conv1d nob(3, 2, 3, rng, 1, 1, /*bias=*/false);
  EXPECT_EQ(testing::names(nob), (std::vector<std::string>{"weight"}));
  EXPECT_FALSE(nob.bias.defined());
}

TEST(Conv1d, BadConstructorArgumentsThrow) {
  Rng rng(8, 0);
  EXPECT_THROW(Conv1d(0, 2, 3, rng), Error);
  EXPECT_THROW(Conv1d(2, 2, 0, rng), Error);
  EXPECT_THROW(Conv1d(2, 2, 4, rng, -1), Error);  // "same" needs odd K
  Conv1d m(2, 3, 3, rng, 1);
  EXPECT_THROW(m.forward(Var(Tensor::zeros({1, 4, 5}))), Error);  // wrong channel count
}

}  // namespace
}  // namespace attn::nn
