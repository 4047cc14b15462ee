#include "attn/core/tensor.h"

#include <gtest/gtest.h>

namespace attn {
namespace {

TEST(Tensor, EmptyIsAlignedAndShaped) {
  Tensor t = Tensor::empty({2, 3, 5});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(t.strides(), (Shape{15, 5, 1}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.numel(), 30);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.get({2, 1}), 5.f);
  Tensor s = t.slice(1, 1, 3);
  EXPECT_EQ(s.to_vector(), (std::vector<float>{1, 2, 4, 5}));
  s.set({1, 0}, 40.f);
  EXPECT_EQ(t.get({1, 1}), 40.f);
  EXPECT_EQ(tt.contiguous().to_vector(), (std::vector<float>{0, 3, 1, 40, 2, 5}));
  EXPECT_EQ(t.select(0, 1).to_vector(), (std::vector<float>{3, 40, 5}));
}

TEST(Tensor, ReshapeViewsContiguousAndCopiesOtherwise) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor r = t.view({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  EXPECT_EQ(r.raw_data(), t.raw_data());
  EXPECT_THROW(t.transpose(0, 1).view({6}), Error);
  Tensor c = t.transpose(0, 1).reshape({6});
  EXPECT_EQ(c.to_vector(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_THROW(t.view({4, 2}), Error);
}

TEST(Tensor, Bf16RoundTripAndConversion) {
  Tensor t = Tensor::from_vector({1.0f, -2.5f, 3.140625f, 1e-3f}, {4});
  Tensor b = t.to(DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  std::vector<float> back = b.to_vector();
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -2.5f);
  EXPECT_EQ(back[2], 3.140625f);
  EXPECT_NEAR(back[3], 1e-3f, 1e-5f);
  EXPECT_NE(back[3], 1e-3f);  // bf16 has 8 bits of mantissa
}

TEST(Tensor, ErrorsNameTheOpAndShape) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.slice(1, 2, 5);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Tensor::slice"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos);
  }
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(Tensor::empty({-1, 2}), Error);
  EXPECT_THROW(Tensor().clone(), Error);
}

}  // namespace
}  // namespace attn
