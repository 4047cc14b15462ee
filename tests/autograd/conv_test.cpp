// ag::conv1d: values against a direct loop over the definition (f32 BLAS path and f64),
// gradients of input, weight and bias by central differences in double, argument errors.
#include <gtest/gtest.h>

#include <string>

#include "attn/autograd/conv.h"
#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::leaf;

struct ConvCase {
  int64_t B, L, Cin, Cout, K, pad, dil;
  bool bias;
};

std::string case_name(const ::testing::TestParamInfo<ConvCase>& i) {
  const ConvCase& c = i.param;
  return "K" + std::to_string(c.K) + "_pad" + std::to_string(c.pad) + "_dil" + std::to_string(c.dil) +
         (c.bias ? "" : "_nobias") + "_L" + std::to_string(c.L);
}

// y[b, t, o] = bias[o] + Σ_{c,k} w[o, c, k] x[b, t + k dil - pad, c], straight from the
// definition, in double.
Tensor conv_direct(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t pad, int64_t dil) {
  const int64_t B = x.size(0), L = x.size(1), Cin = x.size(2), Cout = w.size(0), K = w.size(2);
  const int64_t Lout = L + 2 * pad - dil * (K - 1);
  const double* px = x.data<double>();
  const double* pw = w.data<double>();
  Tensor y = Tensor::zeros({B, Lout, Cout}, DType::f64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Lout; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        double s = bias.defined() ? bias.data<double>()[o] : 0.0;
        for (int64_t c = 0; c < Cin; ++c)
          for (int64_t k = 0; k < K; ++k) {
            const int64_t j = t + k * dil - pad;
            if (j >= 0 && j < L) s += pw[(o * Cin + c) * K + k] * px[(b * L + j) * Cin + c];
          }
        y.data<double>()[(b * Lout + t) * Cout + o] = s;
      }
  return y;
}

class Conv1dCase : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv1dCase, MatchesDirectLoopInF32AndF64) {
  const ConvCase c = GetParam();
  Rng rng(21, 0);
  Tensor x = random_tensor({c.B, c.L, c.Cin}, rng), w = random_tensor({c.Cout, c.Cin, c.K}, rng);
  Tensor b = c.bias ? random_tensor({c.Cout}, rng) : Tensor();
  Tensor ref = conv_direct(x, w, b, c.pad, c.dil);
  ASSERT_EQ(ref.shape(), (Shape{c.B, c.L + 2 * c.pad - c.dil * (c.K - 1), c.Cout}));
  Var y64 = conv1d(Var(x), Var(w), c.bias ? Var(b) : Var(), c.pad, c.dil);
  expect_close(y64.value(), ref, 1e-13, 1e-13, "f64");
  Var y32 = conv1d(Var(x.to(DType::f32)), Var(w.to(DType::f32)), c.bias ? Var(b.to(DType::f32)) : Var(), c.pad, c.dil);
  expect_close(y32.value(), ref, 1e-5, 1e-5, "f32");  // |terms| <= 1, at most 3 * 5 of them
}

TEST_P(Conv1dCase, GradcheckInputWeightBias) {
  const ConvCase c = GetParam();
  Rng rng(22, 0);
  Var x = leaf({c.B, c.L, c.Cin}, rng), w = leaf({c.Cout, c.Cin, c.K}, rng);
  Var b = c.bias ? leaf({c.Cout}, rng) : Var();
  std::vector<Var> leaves = {x, w};
  if (c.bias) leaves.push_back(b);
  expect_gradcheck([&] { return conv1d(x, w, b, c.pad, c.dil); }, leaves);
}

// Padding edges (pad > 0 at both ends, pad 0 = "valid", pad > K/2), K = 1 (a single tap,
// also padded: Lout != L), K = 5, dilation 2, no bias, length-1 input.
INSTANTIATE_TEST_SUITE_P(Shapes, Conv1dCase,
                         ::testing::Values(ConvCase{2, 5, 3, 4, 3, 1, 1, true}, ConvCase{2, 6, 3, 2, 5, 2, 1, true},
                                           ConvCase{2, 6, 2, 3, 5, 0, 1, true}, ConvCase{2, 4, 3, 2, 1, 0, 1, true},
                                           ConvCase{1, 4, 2, 3, 1, 1, 1, false}, ConvCase{2, 7, 2, 3, 3, 2, 2, true},
                                           ConvCase{2, 3, 2, 2, 3, 3, 1, false}, ConvCase{3, 1, 3, 2, 5, 2, 1, true}),
                         case_name);

// f32 through the BLAS at training-like sizes: values and all three gradients against direct
// loops over the definitions,
//   dx[b, j, c] = Σ_{t, k: t + k dil - pad = j} Σ_o w[o, c, k] dy[b, t, o]
//   dw[o, c, k] = Σ_{b, t} dy[b, t, o] x[b, t + k dil - pad, c],   db[o] = Σ_{b, t} dy[b, t, o]
// Both tap layouts: Lout != L (one GEMM per sequence and tap) and "same" padding (one GEMM per
// tap over the whole batch, whose rows crossing a sequence boundary must add nothing), the
// latter with short sequences (most rows near a boundary), K = 5 and dilation 2.
struct LargeCase {
  int64_t B, L, Cin, Cout, K, pad, dil;
};
class Conv1dLarge : public ::testing::TestWithParam<LargeCase> {};

TEST_P(Conv1dLarge, MatchesDirectLoopsValuesAndGradients) {
  const auto [B, L, Cin, Cout, K, pad, dil] = GetParam();
  const int64_t Lout = L + 2 * pad - dil * (K - 1);
  Rng rng(25, 0);
  Tensor x = random_tensor({B, L, Cin}, rng), w = random_tensor({Cout, Cin, K}, rng), b = random_tensor({Cout}, rng);
  Tensor dy = random_tensor({B, Lout, Cout}, rng);
  Var xv(x.to(DType::f32), true), wv(w.to(DType::f32), true), bv(b.to(DType::f32), true);
  Var y = conv1d(xv, wv, bv, pad, dil);
  expect_close(y.value(), conv_direct(x, w, b, pad, dil), 1e-4, 1e-5, "y");
  y.backward(dy.to(DType::f32));
  Tensor dx = Tensor::zeros({B, L, Cin}, DType::f64), dw = Tensor::zeros({Cout, Cin, K}, DType::f64);
  Tensor db = Tensor::zeros({Cout}, DType::f64);
  const double *px = x.data<double>(), *pw = w.data<double>(), *pg = dy.data<double>();
  for (int64_t n = 0; n < B; ++n)
    for (int64_t t = 0; t < Lout; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        const double g = pg[(n * Lout + t) * Cout + o];
        db.data<double>()[o] += g;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t j = t + k * dil - pad;
          if (j < 0 || j >= L) continue;
          for (int64_t c = 0; c < Cin; ++c) {
            dx.data<double>()[(n * L + j) * Cin + c] += pw[(o * Cin + c) * K + k] * g;
            dw.data<double>()[(o * Cin + c) * K + k] += g * px[(n * L + j) * Cin + c];
          }
        }
      }
  expect_close(xv.grad(), dx, 1e-4, 1e-5, "dx");
  expect_close(wv.grad(), dw, 1e-4, 1e-5, "dw");
  expect_close(bv.grad(), db, 1e-4, 1e-5, "db");
}

INSTANTIATE_TEST_SUITE_P(Layouts, Conv1dLarge,
                         ::testing::Values(LargeCase{4, 40, 48, 8, 5, 3, 2},    // Lout = 38: per sequence
                                           LargeCase{6, 7, 40, 24, 5, 2, 1},    // same length, batch-wide taps
                                           LargeCase{5, 9, 16, 32, 3, 2, 2},    // same length, dilated
                                           LargeCase{3, 2, 8, 8, 5, 2, 1}));  // taps reaching past L

// Gradients accumulate into existing grads (the input used twice).
TEST(Conv1d, GradientsAccumulateWhenInputIsReused) {
  Rng rng(23, 0);
  Var x = leaf({2, 5, 3}, rng), w = leaf({4, 3, 3}, rng), b = leaf({4}, rng);
  expect_gradcheck([&] { return add(conv1d(x, w, b, 1), conv1d(mul(x, 2.0), w, b, 1)); }, {x, w, b});
}

TEST(Conv1d, BadArgumentsThrowNamingTheShapes) {
  Rng rng(24, 0);
  Var x(random_tensor({2, 5, 3}, rng)), w(random_tensor({4, 3, 3}, rng));
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message([&] { conv1d(x, Var(random_tensor({4, 2, 3}, rng))); });
  EXPECT_NE(m.find("conv1d"), std::string::npos) << m;
  EXPECT_NE(m.find("[2, 5, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("[4, 2, 3]"), std::string::npos) << m;
  m = message([&] { conv1d(x, w, Var(random_tensor({3}, rng))); });
  EXPECT_NE(m.find("bias"), std::string::npos) << m;
  m = message([&] { conv1d(x, Var(random_tensor({4, 3, 7}, rng))); });  // Lout = 5 - 6 < 1
  EXPECT_NE(m.find("output length"), std::string::npos) << m;
  EXPECT_THROW(conv1d(x, w, Var(), -1), Error);
  EXPECT_THROW(conv1d(x, w, Var(), 1, 0), Error);
  EXPECT_THROW(conv1d(Var(random_tensor({5, 3}, rng)), w), Error);
  EXPECT_THROW(conv1d(Var(x.value().to(DType::f32)), w), Error);  // dtypes differ
}

}  // namespace
}  // namespace attn::ag
