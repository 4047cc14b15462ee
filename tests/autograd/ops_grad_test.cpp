// Central-difference gradient checks (f64) of every op, plus value checks against formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::leaf;

TEST(GradElementwise, BroadcastingArithmetic) {
  Rng rng(10);
  Var a = leaf({2, 3, 4}, rng), b = leaf({3, 1}, rng), c = leaf({4}, rng), d = leaf({2, 1, 1}, rng, 0.5, 1.5);
  expect_gradcheck([&] { return add(a, b); }, {a, b});
  expect_gradcheck([&] { return sub(c, a); }, {a, c});
  expect_gradcheck([&] { return mul(a, b) * c; }, {a, b, c});
  expect_gradcheck([&] { return div(a, d) + div(b, d); }, {a, b, d});
  EXPECT_EQ(add(a, b).shape(), (Shape{2, 3, 4}));
  EXPECT_THROW(add(a, leaf({5}, rng)), Error);
}

// add / sub hand their output gradient to the first input without a copy when it has none yet;
// a trailing-dims b takes the blocked forward loop. Shared inputs and later accumulation into
// the handed-over buffer must still give the right sums.
TEST(GradElementwise, AddHandsOverGradientSafely) {
  Rng rng(12);
  Var a = leaf({2, 3, 4}, rng), t = leaf({3, 4}, rng);
  expect_gradcheck([&] { return add(a, t); }, {a, t});
  expect_gradcheck([&] { return sub(a, t) * 2.0; }, {a, t});
  expect_gradcheck([&] { return add(a, a); }, {a});
  expect_gradcheck([&] {  // h feeds two adds: its handed-over buffer is later added into
    Var h = a * 3.0;
    Var s = add(h, a);
    return mul(s, add(h, t));
  }, {a, t});
  // Values of the blocked loop: a[i, j, k] + t[j, k].
  Var y = add(a, t);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(y.value().get({1, 2, 3}), a.value().get({1, 2, 3}) + t.value().get({2, 3}));
}

TEST(GradElementwise, ScalarsAndUnary) {
  Rng rng(11);
  Var a = leaf({3, 5}, rng), p = leaf({3, 5}, rng, 0.3, 2.0);
  expect_gradcheck([&] { return rsub(2.0, a * 3.0 + 1.0) / 4.0 - 0.5; }, {a});
  expect_gradcheck([&] { return -exp(a); }, {a});
  expect_gradcheck([&] { return log(p) + sqrt(p) + pow(p, -0.5) + pow(p, 3.0); }, {p});
  expect_gradcheck([&] { return tanh(a) + sigmoid(a); }, {a});
  expect_gradcheck([&] { return gelu(a) + gelu(a * 2.0, GeluApprox::tanh); }, {a});
}

TEST(GradElementwise, ReluAwayFromTheKink) {
  Rng rng(12);
  Tensor t = random_tensor({4, 4}, rng, 0.1, 1.0);
  for (int64_t i = 0; i < 16; i += 2) t.data<double>()[i] *= -1;
  Var a(t, true);
  expect_gradcheck([&] { return relu(a); }, {a});
  EXPECT_EQ(relu(a).value().data<double>()[0], 0.0);
}

TEST(Values, GeluMatchesTorchFormulas) {
  Var x(Tensor::from_vector({-2.f, -0.5f, 0.f, 1.f, 3.f}, {5}));
  Tensor e = gelu(x).value(), t = gelu(x, GeluApprox::tanh).value();
  for (int64_t i = 0; i < 5; ++i) {
    double v = x.value().get({i});
    EXPECT_NEAR(e.get({i}), 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-6);
    EXPECT_NEAR(t.get({i}), 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-6);
  }
  EXPECT_NEAR(e.get({3}), 0.8413447460685429, 1e-6);  // Phi(1)
}

TEST(GradReduce, SumMeanMax) {
  Rng rng(13);
  Var a = leaf({2, 3, 4}, rng);
  expect_gradcheck([&] { return sum(a); }, {a});
  expect_gradcheck([&] { return sum(a, {0, 2}); }, {a});
  expect_gradcheck([&] { return mean(a, {-1}, true); }, {a});
  expect_gradcheck([&] { return mean(a) + mean(a, {1}); }, {a});
  expect_gradcheck([&] { return max(a, 1) + max(a, -1, true).value().numel(); }, {a});
  EXPECT_EQ(sum(a, {0, 2}).shape(), (Shape{3}));
  EXPECT_EQ(mean(a, {-1}, true).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(max(a, 1, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(sum(a).shape(), (Shape{}));
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.value().data<double>()[i];
  EXPECT_NEAR(sum(a).value().data<double>()[0], s, 1e-12);
  EXPECT_NEAR(mean(a).value().data<double>()[0], s / 24, 1e-12);
}

TEST(GradShape, ReshapeTransposeSliceConcatSplitStack) {
  Rng rng(14);
  Var a = leaf({2, 3, 4}, rng), b = leaf({2, 2, 4}, rng);
  expect_gradcheck([&] { return reshape(a, {4, -1}) * 2.0; }, {a});
  expect_gradcheck([&] { return transpose(a, 0, 2); }, {a});
  expect_gradcheck([&] { return slice(a, 1, 1, 3) + slice(a, 1, 0, 2); }, {a});
  expect_gradcheck([&] { return concat({a, b, a}, 1); }, {a, b});
  expect_gradcheck([&] { auto p = split(a, 2, {1, 3}); return sum(p[0]) + sum(p[1] * p[1]); }, {a});
  expect_gradcheck([&] { return stack({a, a * 2.0}, 1); }, {a});
  EXPECT_EQ(transpose(a, 0, 2).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(concat({a, b}, 1).shape(), (Shape{2, 5, 4}));
  EXPECT_EQ(stack({a, a}, 3).shape(), (Shape{2, 3, 4, 2}));
  EXPECT_EQ(transpose(a, 0, 2).value().get({3, 2, 1}), a.value().get({1, 2, 3}));
  EXPECT_THROW(concat({a, leaf({2, 3, 5}, rng)}, 1), Error);
  EXPECT_THROW(slice(a, 1, 2, 4), Error);
}

TEST(GradShape, IndexSelectAndEmbedding) {
  Rng rng(15);
  Var w = leaf({5, 3}, rng);
  Tensor idx = Tensor::from_vector_i32({4, 0, 4, 2}, {4});
  expect_gradcheck([&] { return index_select(w, idx); }, {w});
  Tensor ids = Tensor::from_vector_i32({1, 0, 3, 0, 1, 1}, {2, 3});
  expect_gradcheck([&] { return embedding(w, ids); }, {w});
  Var e = embedding(w, ids, 0);
  EXPECT_EQ(e.shape(), (Shape{2, 3, 3}));
  EXPECT_EQ(e.value().data<double>()[(0 * 3 + 2) * 3 + 1], w.value().data<double>()[3 * 3 + 1]);
  w.zero_grad();
  sum(e).backward();
  // Padding row 0 gets nothing; row 1 appears three times.
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(w.grad().get({0, j}), 0.f);
    EXPECT_EQ(w.grad().get({1, j}), 3.f);
    EXPECT_EQ(w.grad().get({2, j}), 0.f);
  }
  EXPECT_THROW(embedding(w, Tensor::from_vector_i32({5}, {1})), Error);
}

TEST(GradMatmul, MatmulBmmLinear) {
  Rng rng(16);
  Var a = leaf({2, 3, 4}, rng), w = leaf({4, 5}, rng), b = leaf({2, 4, 2}, rng);
  expect_gradcheck([&] { return matmul(a, w); }, {a, w});
  expect_gradcheck([&] { return matmul(a, b); }, {a, b});
  EXPECT_EQ(matmul(a, w).shape(), (Shape{2, 3, 5}));
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Var x = leaf(ta ? Shape{2, 4, 3} : Shape{2, 3, 4}, rng), y = leaf(tb ? Shape{2, 5, 4} : Shape{2, 4, 5}, rng);
      expect_gradcheck([&] { return bmm(x, y, ta, tb); }, {x, y});
      EXPECT_EQ(bmm(x, y, ta, tb).shape(), (Shape{2, 3, 5}));
    }
  Var x = leaf({2, 3, 4}, rng), lw = leaf({6, 4}, rng), lb = leaf({6}, rng);
  expect_gradcheck([&] { return linear(x, lw, lb); }, {x, lw, lb});
  expect_gradcheck([&] { return linear(x, lw); }, {x, lw});
  // Value: linear = x wᵀ + b by hand.
  Tensor y = linear(x, lw, lb).value();
  double s = lb.value().data<double>()[2];
  for (int64_t k = 0; k < 4; ++k) s += x.value().data<double>()[(1 * 3 + 2) * 4 + k] * lw.value().data<double>()[2 * 4 + k];
  EXPECT_NEAR(y.data<double>()[(1 * 3 + 2) * 6 + 2], s, 1e-12);
  EXPECT_THROW(linear(x, leaf({6, 5}, rng)), Error);
}

TEST(GradMatmul, F32GoesThroughTheBlasAndMatchesF64) {
  Rng rng(17);
  Tensor a = random_tensor({3, 7, 9}, rng, -1, 1, DType::f32), b = random_tensor({9, 5}, rng, -1, 1, DType::f32);
  Var a32(a, true), b32(b, true);
  Var a64(a.to(DType::f64), true), b64(b.to(DType::f64), true);
  Var y32 = matmul(a32, b32), y64 = matmul(a64, b64);
  expect_close(y32.value(), y64.value(), 1e-5, 1e-5, "matmul f32");
  Tensor seed = random_tensor({3, 7, 5}, rng, -1, 1, DType::f32);
  y32.backward(seed);
  y64.backward(seed.to(DType::f64));
  expect_close(a32.grad(), a64.grad(), 1e-5, 1e-5, "da f32");
  expect_close(b32.grad(), b64.grad(), 1e-5, 1e-5, "db f32");
}

TEST(GradSoftmax, SoftmaxAndLogSoftmaxOverAnyDim) {
  Rng rng(18);
  Var a = leaf({2, 3, 4}, rng, -2, 2);
  expect_gradcheck([&] { return softmax(a, -1); }, {a});
  expect_gradcheck([&] { return softmax(a, 1); }, {a});
  expect_gradcheck([&] { return log_softmax(a, -1); }, {a});
  expect_gradcheck([&] { return log_softmax(a, 0); }, {a});
  Tensor s = softmax(a, 1).value(), l = log_softmax(a, 1).value();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 4; ++k) {
      double z = 0;
      for (int64_t j = 0; j < 3; ++j) z += std::exp(a.value().get({i, j, k}));
      double tot = 0;
      for (int64_t j = 0; j < 3; ++j) {
        EXPECT_NEAR(s.get({i, j, k}), std::exp(a.value().get({i, j, k})) / z, 1e-6);
        EXPECT_NEAR(l.get({i, j, k}), a.value().get({i, j, k}) - std::log(z), 1e-6);
        tot += s.get({i, j, k});
      }
      EXPECT_NEAR(tot, 1.0, 1e-6);
    }
}

TEST(Values, SoftmaxOfAFullyMaskedRowIsZero) {
  float ninf = -INFINITY;
  Var a(Tensor::from_vector({ninf, ninf, 0.f, ninf}, {2, 2}), true);
  Var s = softmax(a);
  EXPECT_EQ(s.value().get({0, 0}), 0.f);
  EXPECT_EQ(s.value().get({0, 1}), 0.f);
  EXPECT_EQ(s.value().get({1, 0}), 1.f);
  sum(s * s).backward();
  EXPECT_FALSE(std::isnan(a.grad().get({0, 0})));
}

TEST(GradLayerNorm, FusedGradcheck) {
  Rng rng(19);
  Var x = leaf({2, 3, 6}, rng, -2, 2), w = leaf({6}, rng), b = leaf({6}, rng);
  expect_gradcheck([&] { return layer_norm(x, w, b, 1e-5); }, {x, w, b});
  expect_gradcheck([&] { return layer_norm(x, Var(), Var(), 1e-3); }, {x});
  EXPECT_THROW(layer_norm(x, leaf({5}, rng), b), Error);
}

// The same formula from primitive ops.
Var layer_norm_composed(const Var& x, const Var& w, const Var& b, double eps) {
  Var mu = mean(x, {-1}, true);
  Var xc = x - mu;
  Var var = mean(xc * xc, {-1}, true);
  return xc * pow(var + eps, -0.5) * w + b;
}

TEST(FusedEqualsComposed, LayerNormValuesAndGradients) {
  for (DType dt : {DType::f64, DType::f32}) {
    Rng rng(20);
    Tensor xt = random_tensor({4, 5, 8}, rng, -3, 3, dt), wt = random_tensor({8}, rng, 0.5, 1.5, dt),
           bt = random_tensor({8}, rng, -1, 1, dt), seed = random_tensor({4, 5, 8}, rng, -1, 1, dt);
    Var x1(xt.clone(), true), w1(wt.clone(), true), b1(bt.clone(), true);
    Var x2(xt.clone(), true), w2(wt.clone(), true), b2(bt.clone(), true);
    Var y1 = layer_norm(x1, w1, b1, 1e-5), y2 = layer_norm_composed(x2, w2, b2, 1e-5);
    y1.backward(seed);
    y2.backward(seed);
    const double tol = dt == DType::f64 ? 1e-12 : 2e-5;
    expect_close(y1.value(), y2.value(), tol, tol, "layer_norm y");
    expect_close(x1.grad(), x2.grad(), tol, tol, "layer_norm dx");
    expect_close(w1.grad(), w2.grad(), tol, tol, "layer_norm dw");
    expect_close(b1.grad(), b2.grad(), tol, tol, "layer_norm db");
  }
}

TEST(GradDropout, FixedMaskGradcheckAndStatistics) {
  Rng rng(21);
  Var a = leaf({4, 8}, rng);
  expect_gradcheck([&] { return dropout(a, 0.3, 7, 100); }, {a});
  Var big(Tensor::full({100000}, 1.f), true);
  Var y = dropout(big, 0.25, 3);
  int64_t kept = 0;
  for (float v : y.value().to_vector()) {
    if (v != 0.f) {
      EXPECT_FLOAT_EQ(v, 1.f / 0.75f);
      ++kept;
    }
  }
  EXPECT_NEAR(static_cast<double>(kept) / 100000, 0.75, 0.01);
  // Same seed and offset: same mask; another offset: another mask.
  EXPECT_EQ(dropout(big, 0.25, 3).value().to_vector(), y.value().to_vector());
  EXPECT_NE(dropout(big, 0.25, 3, 1).value().to_vector(), y.value().to_vector());
  EXPECT_EQ(dropout(big, 0.0, 3).node(), big.node());
  EXPECT_THROW(dropout(big, 1.0, 3), Error);
}

TEST(GradLoss, CrossEntropyWithSmoothingAndIgnore) {
  Rng rng(22);
  Var x = leaf({5, 4}, rng, -2, 2);
  Tensor t = Tensor::from_vector_i32({1, -100, 3, 0, 2}, {5});
  expect_gradcheck([&] { return cross_entropy(x, t, -100, 0.1); }, {x});
  expect_gradcheck([&] { return cross_entropy(x, Tensor::from_vector_i32({1, 2, 3, 0, 2}, {5}), 2, 0.0); }, {x});
  // Value by the formula in the header.
  double eps = 0.1, tot = 0;
  int n = 0;
  for (int64_t i = 0; i < 5; ++i) {
    int tt = static_cast<int>(t.get({i}));
    if (tt == -100) continue;
    double z = 0;
    for (int64_t c = 0; c < 4; ++c) z += std::exp(x.value().get({i, c}));
    double lz = std::log(z), sl = 0;
    for (int64_t c = 0; c < 4; ++c) sl += x.value().get({i, c}) - lz;
    tot += -(1 - eps) * (x.value().get({i, tt}) - lz) - eps / 4 * sl;
    ++n;
  }
  EXPECT_NEAR(cross_entropy(x, t, -100, 0.1).value().data<double>()[0], tot / n, 1e-6);
  // Ignored rows get exactly zero gradient.
  x.zero_grad();
  cross_entropy(x, t, -100, 0.1).backward();
  for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(x.grad().get({1, c}), 0.f);
  EXPECT_THROW(cross_entropy(x, Tensor::from_vector_i32({1, 2, 4, 0, 2}, {5})), Error);
  EXPECT_EQ(cross_entropy(x, Tensor::from_vector_i32({-100, -100, -100, -100, -100}, {5})).value().get({}), 0.f);
}

// GRU / LSTM cells from primitive ops, PyTorch's equations.
Var gru_composed(const Var& x, const Var& h, const Var& wi, const Var& wh, const Var& bi, const Var& bh) {
  auto gi = split(linear(x, wi, bi), 1, {h.size(1), h.size(1), h.size(1)});
  auto gh = split(linear(h, wh, bh), 1, {h.size(1), h.size(1), h.size(1)});
  Var r = sigmoid(gi[0] + gh[0]), z = sigmoid(gi[1] + gh[1]);
  Var n = tanh(gi[2] + r * gh[2]);
  return rsub(1.0, z) * n + z * h;
}

std::pair<Var, Var> lstm_composed(const Var& x, const Var& h, const Var& c, const Var& wi, const Var& wh,
                                  const Var& bi, const Var& bh) {
  const int64_t H = h.size(1);
  auto g = split(linear(x, wi, bi) + linear(h, wh, bh), 1, {H, H, H, H});
  Var i = sigmoid(g[0]), f = sigmoid(g[1]), gg = tanh(g[2]), o = sigmoid(g[3]);
  Var cn = f * c + i * gg;
  return {o * tanh(cn), cn};
}

TEST(GradRnnCell, GruAndLstmGradcheck) {
  Rng rng(23);
  const int64_t B = 3, I = 4, H = 5;
  Var x = leaf({B, I}, rng), h = leaf({B, H}, rng), c = leaf({B, H}, rng);
  Var wi = leaf({3 * H, I}, rng), wh = leaf({3 * H, H}, rng), bi = leaf({3 * H}, rng), bh = leaf({3 * H}, rng);
  expect_gradcheck([&] { return gru_cell(x, h, wi, wh, bi, bh); }, {x, h, wi, wh, bi, bh});
  Tensor active = Tensor::from_vector_i32({1, 0, 1}, {B});
  expect_gradcheck([&] { return gru_cell(linear(x, wi, bi), h, wh, bh, active); }, {x, h, wi, wh, bi, bh});
  Var li = leaf({4 * H, I}, rng), lh = leaf({4 * H, H}, rng), lbi = leaf({4 * H}, rng), lbh = leaf({4 * H}, rng);
  expect_gradcheck([&] { auto [hn, cn] = lstm_cell(x, h, c, li, lh, lbi, lbh); return concat({hn, cn * 2.0}, 1); },
                   {x, h, c, li, lh, lbi, lbh});
  expect_gradcheck(
      [&] { auto [hn, cn] = lstm_cell(linear(x, li, lbi), h, c, lh, Var(), active); return concat({hn, cn}, 0); },
      {x, h, c, li, lh, lbi});
  // Inactive rows keep their state exactly.
  Var hn = gru_cell(linear(x, wi, bi), h, wh, bh, active);
  for (int64_t j = 0; j < H; ++j) EXPECT_EQ(hn.value().get({1, j}), h.value().get({1, j}));
  EXPECT_THROW(gru_cell(x, h, wi, wh, bi, leaf({2}, rng)), Error);
}

TEST(FusedEqualsComposed, GruAndLstmCells) {
  for (DType dt : {DType::f64, DType::f32}) {
    Rng rng(24);
    const int64_t B = 4, I = 6, H = 7;
    auto mk = [&](const Shape& s) { return random_tensor(s, rng, -0.8, 0.8, dt); };
    std::vector<Tensor> gru_t = {mk({B, I}), mk({B, H}), mk({3 * H, I}), mk({3 * H, H}), mk({3 * H}), mk({3 * H})};
    std::vector<Var> a, b;
    for (auto& t : gru_t) {
      a.emplace_back(t.clone(), true);
      b.emplace_back(t.clone(), true);
    }
    Tensor seed = mk({B, H});
    Var ya = gru_cell(a[0], a[1], a[2], a[3], a[4], a[5]), yb = gru_composed(b[0], b[1], b[2], b[3], b[4], b[5]);
    ya.backward(seed);
    yb.backward(seed);
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    expect_close(ya.value(), yb.value(), tol, tol, "gru h'");
    for (size_t i = 0; i < a.size(); ++i) expect_close(a[i].grad(), b[i].grad(), tol, tol, "gru grad " + std::to_string(i));

    std::vector<Tensor> lt = {mk({B, I}), mk({B, H}), mk({B, H}), mk({4 * H, I}), mk({4 * H, H}), mk({4 * H}), mk({4 * H})};
    std::vector<Var> la, lb;
    for (auto& t : lt) {
      la.emplace_back(t.clone(), true);
      lb.emplace_back(t.clone(), true);
    }
    auto [ha, ca] = lstm_cell(la[0], la[1], la[2], la[3], la[4], la[5], la[6]);
    auto [hb, cb] = lstm_composed(lb[0], lb[1], lb[2], lb[3], lb[4], lb[5], lb[6]);
    Tensor s2 = mk({B, 2 * H});
    concat({ha, ca}, 1).backward(s2);
    concat({hb, cb}, 1).backward(s2);
    expect_close(ha.value(), hb.value(), tol, tol, "lstm h'");
    expect_close(ca.value(), cb.value(), tol, tol, "lstm c'");
    for (size_t i = 0; i < la.size(); ++i) expect_close(la[i].grad(), lb[i].grad(), tol, tol, "lstm grad " + std::to_string(i));
  }
}

}  // namespace
}  // namespace attn::ag
