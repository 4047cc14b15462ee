// Tensor::copy_from / contiguous on strided views (the same-dtype row-by-row fast path)
// against element-by-element reads of the source.
#include <gtest/gtest.h>

#include "attn/core/tensor.h"

namespace attn {
namespace {

TEST(TensorCopy, StridedViewsMatchElementReads) {
  Tensor a = Tensor::empty({3, 4, 5, 6});
  for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = static_cast<float>(i) * 0.5f - 7.f;
  // Transposes (inner dim dense and strided), slices, and a 1-D strided view.
  for (const Tensor& v : {a.transpose(1, 2), a.transpose(2, 3), a.transpose(0, 3), a.slice(3, 1, 4),
                          a.slice(1, 1, 3).transpose(0, 2), a.select(0, 1).select(1, 2).select(1, 3)}) {
    Tensor c = v.contiguous();
    ASSERT_EQ(c.shape(), v.shape());
    ASSERT_TRUE(c.is_contiguous());
    const int64_t n = c.numel();
    std::vector<float> want = v.to_vector();
    ASSERT_EQ(static_cast<int64_t>(want.size()), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(c.data<float>()[i], want[i]) << "element " << i;
  }
  // Into a strided destination.
  Tensor d = Tensor::zeros({6, 5});
  d.transpose(0, 1).copy_from(a.select(0, 2).select(0, 3));
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 6; ++j) EXPECT_EQ(d.get({j, i}), a.get({2, 3, i, j}));
  // i32 and f64 take the same path.
  Tensor ii = Tensor::from_vector_i32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor it = ii.transpose(0, 1).contiguous();
  EXPECT_EQ(it.get({2, 1}), 6.f);
  EXPECT_EQ(it.get({0, 1}), 4.f);
  Tensor f64 = a.to(DType::f64).transpose(1, 3).contiguous();
  EXPECT_EQ(f64.get({2, 5, 4, 3}), a.get({2, 3, 4, 5}));
}

}  // namespace
}  // namespace attn
