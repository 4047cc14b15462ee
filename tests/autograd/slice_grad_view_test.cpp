// slice of a contiguous block (rows of a packed weight, as MultiheadAttention's q and kv
// projections slice in_proj_weight): the block's gradient is a view of the input's gradient
// (Node::grad_view), so consumers add into it in place and slice's backward copies nothing.
// Checked: central differences in f64; f32 gradients equal, bit for bit, those of separate
// leaves for each block (the composition the view replaces); gradients accumulated over two
// backward passes equal the sum; the fallbacks (no gradient yet on the input, a consumer that
// hands its gradient over instead of asking for a buffer, a slice that is not one block).
#include <gtest/gtest.h>

#include <cstring>

#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::leaf;

void expect_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  EXPECT_EQ(0, std::memcmp(ac.raw_data(), bc.raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())))
      << what;
}

// The multi-head attention pattern: two linears on row blocks of one weight and bias, plus a
// third use of a block through an element-wise op (which hands its gradient over).
Var two_projections(const Var& x, const Var& m, const Var& w, const Var& b, bool extra_use) {
  Var q = linear(x, slice(w, 0, 0, 4), slice(b, 0, 0, 4));
  Var kv = linear(m, slice(w, 0, 4, 12), slice(b, 0, 4, 12));
  Var y = sum(tanh(q)) + sum(kv * kv);
  if (extra_use) y = y + sum(slice(w, 0, 2, 6) * 0.5);
  return y;
}

TEST(SliceGradView, GradcheckF64) {
  Rng rng(5);
  Var x = leaf({3, 6}, rng), m = leaf({5, 6}, rng), w = leaf({12, 6}, rng), b = leaf({12}, rng);
  for (bool extra : {false, true}) expect_gradcheck([&] { return two_projections(x, m, w, b, extra); }, {x, m, w, b});
  // Slices that are not one block (outer dims > 1) and a 3-D block with a leading 1.
  Var a = leaf({2, 5, 3}, rng), c = leaf({1, 5, 3}, rng);
  expect_gradcheck([&] { return sum(slice(a, 1, 1, 4) * slice(a, 1, 0, 3)); }, {a});
  expect_gradcheck([&] { return sum(tanh(slice(c, 1, 1, 4))) + sum(slice(c, 1, 2, 5) * 2.0); }, {c});
}

// Same values as separate leaves for the blocks (whose gradients are then placed in rows).
TEST(SliceGradView, F32EqualsSeparateBlocks) {
  Rng rng(7);
  const Tensor xt = random_tensor({40, 32}, rng, -1, 1, DType::f32), mt = random_tensor({50, 32}, rng, -1, 1, DType::f32),
               wt = random_tensor({12, 32}, rng, -0.5, 0.5, DType::f32), bt = random_tensor({12}, rng, -0.5, 0.5, DType::f32);
  for (bool zeroed : {true, false}) {
    SCOPED_TRACE(zeroed ? "zero_grad first" : "no gradient yet");
    Var x(xt.clone(), true), m(mt.clone(), true), w(wt.clone(), true), b(bt.clone(), true);
    if (zeroed) {
      w.zero_grad();
      b.zero_grad();
    }
    Var y = two_projections(x, m, w, b, false);
    y.backward();

    Var x2(xt.clone(), true), m2(mt.clone(), true);
    Var wq(wt.slice(0, 0, 4).contiguous(), true), wkv(wt.slice(0, 4, 12).contiguous(), true);
    Var bq(bt.slice(0, 0, 4).contiguous(), true), bkv(bt.slice(0, 4, 12).contiguous(), true);
    Var q = linear(x2, wq, bq), kv = linear(m2, wkv, bkv);
    Var y2 = sum(tanh(q)) + sum(kv * kv);
    y2.backward();

    expect_bits(y.value(), y2.value(), "loss");
    ASSERT_EQ(w.grad().shape(), (Shape{12, 32}));
    ASSERT_EQ(b.grad().shape(), (Shape{12}));
    expect_bits(w.grad().slice(0, 0, 4), wq.grad(), "dw rows 0..4");
    expect_bits(w.grad().slice(0, 4, 12), wkv.grad(), "dw rows 4..12");
    expect_bits(b.grad().slice(0, 0, 4), bq.grad(), "db 0..4");
    expect_bits(b.grad().slice(0, 4, 12), bkv.grad(), "db 4..12");
    expect_bits(x.grad(), x2.grad(), "dx");
    expect_bits(m.grad(), m2.grad(), "dm");
  }
}

// A second backward adds into the gradients the first left (no zero_grad between): the sum
// of the two passes' gradients, each taken alone.
TEST(SliceGradView, TwoBackwardPassesAccumulate) {
  Rng rng(9);
  const Tensor xt = random_tensor({6, 8}, rng, -1, 1, DType::f32), mt = random_tensor({7, 8}, rng, -1, 1, DType::f32),
               x2t = random_tensor({6, 8}, rng, -1, 1, DType::f32), wt = random_tensor({12, 8}, rng, -0.5, 0.5, DType::f32),
               bt = random_tensor({12}, rng, -0.5, 0.5, DType::f32);
  auto grads = [&](const std::vector<const Tensor*>& xs) {
    Var w(wt.clone(), true), b(bt.clone(), true), m(mt.clone(), true);
    w.zero_grad();
    for (const Tensor* xv : xs) two_projections(Var(xv->clone(), true), m, w, b, true).backward();
    return std::vector<Tensor>{w.grad().clone(), b.grad().clone()};
  };
  const std::vector<Tensor> both = grads({&xt, &x2t}), first = grads({&xt}), second = grads({&x2t});
  for (size_t i = 0; i < 2; ++i) {
    Tensor total = Tensor::empty(first[i].shape());
    for (int64_t j = 0; j < total.numel(); ++j)
      total.data<float>()[j] = first[i].data<float>()[j] + second[i].data<float>()[j];
    // One rounding per element on each side (the products are single GEMM blocks here).
    expect_close(both[i], total, 1e-6, 1e-6, i == 0 ? "dw" : "db");
  }
}

// A slice that is the root of backward, and one whose only consumer hands its gradient over
// (reshape) rather than asking for a buffer: values from the definition.
TEST(SliceGradView, RootAndHandedOverGradients) {
  Var w(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}), true);
  w.zero_grad();
  Var s = slice(w, 0, 1, 3);  // rows 1, 2
  s.backward(Tensor::from_vector({1, 1, 1, 1}, {2, 2}));
  reshape(slice(w, 0, 0, 2), {4}).backward(Tensor::from_vector({10, 20, 30, 40}, {4}));
  ASSERT_EQ(w.grad().shape(), (Shape{3, 2}));
  const std::vector<float> want = {10, 20, 31, 41, 1, 1};
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(w.grad().data<float>()[i], want[static_cast<size_t>(i)]) << i;
}

}  // namespace
}  // namespace attn::ag
