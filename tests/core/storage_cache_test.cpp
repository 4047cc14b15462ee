#include "attn/core/storage_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "attn/core/tensor.h"

namespace attn {
namespace {

TEST(StorageCache, SizeClassesCoverTheRequestWithBoundedWaste) {
  EXPECT_EQ(storage_class_bytes(0), 64u);
  EXPECT_EQ(storage_class_bytes(1), 64u);
  EXPECT_EQ(storage_class_bytes(64), 64u);
  EXPECT_EQ(storage_class_bytes(65), 128u);
  EXPECT_EQ(storage_class_bytes(4096), 4096u);
  EXPECT_EQ(storage_class_bytes(4097), 4608u);  // 4096 + 4096 / 8
  for (size_t b : {size_t{5000}, size_t{65537}, size_t{1} << 20, (size_t{1} << 20) + 1, size_t{8388608 + 12345}}) {
    const size_t c = storage_class_bytes(b);
    EXPECT_GE(c, b);
    EXPECT_EQ(c % 64, 0u);
    EXPECT_LE(static_cast<double>(c), 1.125 * static_cast<double>(b) + 64) << b;
    EXPECT_EQ(storage_class_bytes(c), c) << "a class size is its own class";
  }
}

TEST(StorageCache, BlocksAreAlignedAndWritable) {
  for (size_t b : {size_t{0}, size_t{3}, size_t{4095}, size_t{100000}, size_t{3} << 20}) {
    void* p = storage_alloc(b);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    std::memset(p, 0x5a, storage_class_bytes(b));
    storage_free(p, b);
  }
}

TEST(StorageCache, FreedBlockIsReusedForTheSameClass) {
  if (!storage_cache_enabled()) GTEST_SKIP() << "cache off (ASan or ATTN_NO_CACHE)";
  storage_cache_release();
  const size_t b = 123456;
  void* p = storage_alloc(b);
  storage_free(p, b);
  EXPECT_EQ(storage_cache_stats().cached_bytes, storage_class_bytes(b));
  const uint64_t hits = storage_cache_stats().hits;
  void* q = storage_alloc(b - 100);  // same class
  EXPECT_EQ(q, p);
  EXPECT_EQ(storage_cache_stats().hits, hits + 1);
  EXPECT_EQ(storage_cache_stats().cached_bytes, 0u);
  storage_free(q, b - 100);
  storage_cache_release();
  EXPECT_EQ(storage_cache_stats().cached_bytes, 0u);
}

TEST(StorageCache, TensorsRecycleStorageAcrossThreads) {
  if (!storage_cache_enabled()) GTEST_SKIP() << "cache off (ASan or ATTN_NO_CACHE)";
  storage_cache_release();
  const void* first;
  {
    Tensor t = Tensor::full({300, 70}, 2.f);
    first = t.raw_data();
    std::thread([t]() mutable { t = Tensor(); }).join();  // last reference dropped elsewhere
  }
  Tensor u = Tensor::zeros({300, 70});
  EXPECT_EQ(u.raw_data(), first);
  for (float v : u.to_vector()) ASSERT_EQ(v, 0.f);  // zeros() still zeroes a recycled block
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k)
    ts.emplace_back([] {
      for (int i = 0; i < 200; ++i) {
        Tensor a = Tensor::full({17 + i % 5, 33}, static_cast<float>(i));
        ASSERT_EQ(a.get({3, 4}), static_cast<float>(i));
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_LE(storage_cache_stats().cached_bytes, storage_cache_limit());
}

}  // namespace
}  // namespace attn
