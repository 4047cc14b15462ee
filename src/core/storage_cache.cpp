#include "attn/core/storage_cache.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "attn/core/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define ATTN_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTN_UNDER_ASAN 1
#endif
#endif

namespace attn {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kSmallMax = 4096;          // 64-byte steps up to here: classes 0..63
constexpr int kSubClasses = 8;              // classes per power of two above kSmallMax
constexpr int kMaxLog2 = 47;                // larger blocks are never cached
constexpr int kNumClasses = 64 + (kMaxLog2 - 12 + 1) * kSubClasses;
constexpr size_t kDefaultLimit = size_t{2} << 30;  // 2 GiB of free blocks at most

// Size class of a request: its index (or -1 when too large to cache) and its rounded size.
struct SizeClass {
  int index;
  size_t bytes;
};

SizeClass size_class(size_t bytes) {
  size_t padded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (padded == 0) padded = kAlign;
  if (padded <= kSmallMax) return {static_cast<int>(padded / kAlign) - 1, padded};
  // 2^k < padded <= 2^(k+1); round up to a multiple of 2^k / 8.
  const int k = 63 - __builtin_clzll(static_cast<unsigned long long>(padded - 1));
  if (k > kMaxLog2) return {-1, padded};
  const size_t step = (size_t{1} << k) / kSubClasses;
  const size_t rounded = (padded + step - 1) / step * step;
  const int sub = static_cast<int>(rounded / step) - kSubClasses - 1;  // 0 .. 7
  return {64 + (k - 12) * kSubClasses + sub, rounded};
}

[[maybe_unused]] bool env_disabled() {  // unused under ASan, where the cache stays off
  const char* e = std::getenv("ATTN_NO_CACHE");
  return e != nullptr && std::strcmp(e, "0") != 0;
}

void* system_alloc(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr)
    fail("Tensor: cannot allocate ", bytes, " bytes (out of memory); try a smaller shape");
  return p;
}

struct Cache {
  std::mutex mu;
  std::vector<void*> free_lists[kNumClasses];
  size_t cached_bytes = 0;
  uint64_t hits = 0, misses = 0;
  std::atomic<bool> enabled{false};

  Cache() {
#ifndef ATTN_UNDER_ASAN
    enabled = !env_disabled();
#endif
  }

  void release_locked() {
    for (int c = 0; c < kNumClasses; ++c) {
      for (void* p : free_lists[c]) std::free(p);
      free_lists[c].clear();
      free_lists[c].shrink_to_fit();
    }
    cached_bytes = 0;
  }
};

// Never destroyed (tensors in other static objects may be freed after this file's statics);
// ExitRelease below returns its blocks to the system at exit and turns it off.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

struct ExitRelease {
  ExitRelease() { cache(); }
  ~ExitRelease() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.enabled = false;
    c.release_locked();
  }
} g_exit_release;

}  // namespace

size_t storage_class_bytes(size_t bytes) { return size_class(bytes).bytes; }

void* storage_alloc(size_t bytes) {
  const SizeClass sc = size_class(bytes);
  Cache& c = cache();
  if (sc.index >= 0 && c.enabled.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(c.mu);
    auto& list = c.free_lists[sc.index];
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      c.cached_bytes -= sc.bytes;
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  return system_alloc(sc.bytes);
}

void storage_free(void* p, size_t bytes) {
  if (p == nullptr) return;
  const SizeClass sc = size_class(bytes);
  Cache& c = cache();
  if (sc.index >= 0 && c.enabled.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.enabled.load(std::memory_order_relaxed) && c.cached_bytes + sc.bytes <= kDefaultLimit) {
      c.free_lists[sc.index].push_back(p);
      c.cached_bytes += sc.bytes;
      return;
    }
  }
  std::free(p);
}

StorageCacheStats storage_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  StorageCacheStats s;
  s.enabled = c.enabled.load();
  s.cached_bytes = c.cached_bytes;
  s.hits = c.hits;
  s.misses = c.misses;
  return s;
}

bool storage_cache_enabled() { return cache().enabled.load(); }

size_t storage_cache_limit() { return kDefaultLimit; }

void storage_cache_release() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.release_locked();
}

}  // namespace attn
