// The worked example of the classic attention article: keys = values = x = [1, 2, 3] (three
// 1-D vectors), queries y = [4, 5, 6], dot-product scores, softmax over the keys, weighted
// sum of the values. The expected numbers were computed independently with Python's decimal
// module at 40 digits (and the outputs checked with bc -l); see docs/ATTENTION.md.
#include <gtest/gtest.h>

#include "attention/attention_test_util.h"

namespace attn {
namespace {

using test::close_to;

// Query y attends over keys x: scores y * x = [y, 2y, 3y].
//   y = 4: scores [4, 8, 12]
//   y = 5: scores [5, 10, 15]
//   y = 6: scores [6, 12, 18]
const std::vector<double> kWeights = {
    3.29320438963892914482e-4, 1.79802867355315452912e-2, 9.81690392825504561794e-1,  // y = 4
    4.50940412363548807532e-5, 6.69254911658928708221e-3, 9.93262356842174358037e-1,  // y = 5
    6.12898246692777595726e-6, 2.47260800197079999992e-3, 9.97521263015562272224e-1,  // y = 6
};
const std::vector<double> kOut = {2.98136107238654066888, 2.99321726280093800316,
                                  2.99751513403309534445};
const std::vector<double> kLse = {12.01847930259465748228, 15.00676044354712126788,
                                  18.00248181413897966709};
// d(sum out)/dy = Var_w(x) = sum_j w_j x_j^2 - out^2.
const std::vector<double> kDq = {1.89501588688073401923e-2, 6.82691975762316722302e-3,
                                 2.49094937296503009500e-3};

// f32 results of a double computation: relative error about 1e-7.
constexpr double kAtol = 1e-7, kRtol = 1e-6;

TEST(AttentionWorkedExample, ClassicArticleNumbers) {
  Tensor x = Tensor::from_vector({1, 2, 3}, {3, 1});  // keys = values, [Nk = 3, D = 1]
  Tensor y = Tensor::from_vector({4, 5, 6}, {3, 1});  // queries, [Nq = 3, D = 1]
  for (ScoreFn fn : {ScoreFn::dot, ScoreFn::scaled_dot}) {  // D = 1: the scale is 1
    AttentionOptions opts;
    opts.score = fn;
    opts.need_weights = true;
    // The reference's numbers: the fused f32 backward (automatic) takes D_i = dout·out from
    // the f32-rounded out, which costs ~1e-4 relative on this cancelling Var_w(x); it is
    // checked against the reference in tests/kernels/flash_backward_test.cpp.
    opts.backend = AttentionBackend::reference;
    AttentionOutput o = attention_forward(y, x, x, {}, opts);
    EXPECT_TRUE(close_to(o.weights, {3, 3}, kWeights, kAtol, kRtol)) << score_fn_name(fn);
    EXPECT_TRUE(close_to(o.out, {3, 1}, kOut, kAtol, kRtol)) << score_fn_name(fn);
    EXPECT_TRUE(close_to(o.lse, {3}, kLse, kAtol, kRtol)) << score_fn_name(fn);
    AttentionGrads g = attention_backward(y, x, x, {}, opts, o, Tensor::full({3, 1}, 1.f));
    EXPECT_TRUE(close_to(g.dq, {3, 1}, kDq, kAtol, kRtol)) << score_fn_name(fn);
  }
}

}  // namespace
}  // namespace attn
