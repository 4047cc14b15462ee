#include "attn/data/batching.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "attn/core/error.h"
#include "attn/data/vocabulary.h"

namespace attn::data {

namespace {
std::vector<SeqPair> make_examples(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<SeqPair> ex;
  for (int i = 0; i < n; ++i) {
    SeqPair p;
    int ns = 1 + static_cast<int>(rng.below(12)), nt = 1 + static_cast<int>(rng.below(10));
    for (int k = 0; k < ns; ++k) p.src.push_back(3 + static_cast<int32_t>(rng.below(20)));
    for (int k = 0; k < nt; ++k) p.tgt.push_back(3 + static_cast<int32_t>(rng.below(30)));
    ex.push_back(p);
  }
  return ex;
}
}  // namespace

TEST(Batching, CollateLayout) {
  std::vector<SeqPair> ex = {{{5, 6, 7}, {10, 11}}, {{8}, {12, 13, 14, 15}}};
  Batch b = collate(ex, {1, 0});
  ASSERT_EQ(b.src.shape(), (Shape{2, 3}));
  ASSERT_EQ(b.tgt_in.shape(), (Shape{2, 5}));
  ASSERT_EQ(b.tgt_out.shape(), (Shape{2, 5}));
  ASSERT_EQ(b.src_lengths.shape(), (Shape{2}));
  ASSERT_EQ(b.src.dtype(), DType::i32);
  const int32_t P = Vocabulary::kPad, S = Vocabulary::kBos, E = Vocabulary::kEos;
  auto row = [](const Tensor& t, int64_t r) {
    std::vector<float> v = t.select(0, r).to_vector();
    return std::vector<int32_t>(v.begin(), v.end());
  };
  EXPECT_EQ(row(b.src, 0), (std::vector<int32_t>{8, P, P}));
  EXPECT_EQ(row(b.src, 1), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(row(b.tgt_in, 0), (std::vector<int32_t>{S, 12, 13, 14, 15}));
  EXPECT_EQ(row(b.tgt_out, 0), (std::vector<int32_t>{12, 13, 14, 15, E}));
  EXPECT_EQ(row(b.tgt_in, 1), (std::vector<int32_t>{S, 10, 11, P, P}));
  EXPECT_EQ(row(b.tgt_out, 1), (std::vector<int32_t>{10, 11, E, P, P}));
  EXPECT_EQ(b.src_lengths.to_vector(), (std::vector<float>{1, 3}));
  EXPECT_EQ(b.tgt_lengths.to_vector(), (std::vector<float>{5, 3}));
  EXPECT_EQ(b.n_tokens, (1 + 3) + (5 + 3));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{1, 0}));
}

TEST(Batching, CollateErrors) {
  std::vector<SeqPair> ex = {{{5}, {6}}, {{}, {6}}};
  EXPECT_THROW(collate(ex, {}), Error);
  EXPECT_THROW(collate(ex, {2}), Error);
  EXPECT_THROW(collate(ex, {1}), Error);
  Batch s = collate_sources({{4, 5}, {6}});
  ASSERT_EQ(s.src.shape(), (Shape{2, 2}));
  EXPECT_EQ(s.src.to_vector(), (std::vector<float>{4, 5, 6, 0}));
}

TEST(Batching, TrainBatchesCoverEveryExampleOnceAndAreBucketed) {
  auto ex = make_examples(1000, 3);
  Rng rng(11);
  const int64_t bs = 8;
  auto batches = make_train_batches(ex, bs, rng);
  // 1000 examples in chunks of 400, 400, 200 -> 50 + 50 + 25 batches.
  ASSERT_EQ(batches.size(), 125u);
  std::vector<int64_t> all;
  for (const auto& b : batches) {
    ASSERT_GE(b.size(), 1u);
    ASSERT_LE(b.size(), static_cast<size_t>(bs));
    all.insert(all.end(), b.begin(), b.end());
    // Sorted by (src length, tgt length) within the batch.
    for (size_t i = 1; i < b.size(); ++i) {
      const auto& p = ex[static_cast<size_t>(b[i - 1])];
      const auto& q = ex[static_cast<size_t>(b[i])];
      EXPECT_TRUE(p.src.size() < q.src.size() || (p.src.size() == q.src.size() && p.tgt.size() <= q.tgt.size()));
    }
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), 1000u);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(all[static_cast<size_t>(i)], i);
  // Bucketing pays off: far less padding than batches of the shuffled order would need.
  auto padding = [&](const std::vector<std::vector<int64_t>>& bb) {
    int64_t pad = 0;
    for (const auto& b : bb) {
      Batch c = collate(ex, b);
      pad += c.src.numel();
      for (float len : c.src_lengths.to_vector()) pad -= static_cast<int64_t>(len);
    }
    return pad;
  };
  std::vector<std::vector<int64_t>> plain;
  for (int64_t i = 0; i < 1000; i += bs) {
    std::vector<int64_t> b;
    for (int64_t j = i; j < std::min<int64_t>(1000, i + bs); ++j) b.push_back(j);
    plain.push_back(b);
  }
  EXPECT_LT(padding(batches) * 3, padding(plain));
}

TEST(Batching, TrainBatchesAreDeterministic) {
  auto ex = make_examples(300, 5);
  Rng a(9), b(9), c(10);
  auto ba = make_train_batches(ex, 16, a), bb = make_train_batches(ex, 16, b), bc = make_train_batches(ex, 16, c);
  EXPECT_EQ(ba, bb);
  EXPECT_NE(ba, bc);
  // The next epoch (same generator) is a different order.
  EXPECT_NE(make_train_batches(ex, 16, a), ba);
  EXPECT_THROW(make_train_batches(ex, 0, a), Error);
}

TEST(Batching, EvalBatchesSortedBySourceLength) {
  auto ex = make_examples(50, 8);
  auto batches = make_eval_batches(ex, 16, true);
  ASSERT_EQ(batches.size(), 4u);
  ASSERT_EQ(batches.back().size(), 2u);
  size_t prev = 0;
  for (const auto& b : batches) {
    for (int64_t i : b) {
      EXPECT_GE(ex[static_cast<size_t>(i)].src.size(), prev);
      prev = ex[static_cast<size_t>(i)].src.size();
    }
  }
  EXPECT_EQ(make_eval_batches(ex, 16, false)[0][3], 3);
}

}  // namespace attn::data
