// A caching allocator for tensor storage. Training allocates the same activation and
// gradient sizes every step; handing freed blocks back to the next request of the same size
// class avoids the page faults (and zeroing by the kernel) of fresh allocations, which cost
// about 8 % of a Transformer training step.
//
// Sizes are rounded up to a size class (multiples of 64 bytes up to 4 KiB, then 8 classes per
// power of two, so at most 12.5 % is wasted); each class keeps a free list. Thread-safe (one
// mutex). The cache holds at most storage_cache_limit() free bytes; blocks beyond it go back
// to the system. Cached blocks are freed at process exit (and by storage_cache_release()).
//
// The cache is off — every block goes straight to the system allocator — when the
// environment variable ATTN_NO_CACHE is set to anything but "0", or under AddressSanitizer,
// so that the sanitizer still sees use-after-free of tensor memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attn {

// 64-byte aligned block of at least `bytes` bytes (a 0-byte request still gets a block).
// Throws attn::Error when out of memory.
void* storage_alloc(size_t bytes);
// Returns a block from storage_alloc(bytes) (same `bytes`).
void storage_free(void* p, size_t bytes);

// Bytes actually reserved for a request of `bytes` (its size class).
size_t storage_class_bytes(size_t bytes);

struct StorageCacheStats {
  bool enabled = false;
  size_t cached_bytes = 0;  // free bytes held in the cache now
  uint64_t hits = 0;        // requests served from the cache
  uint64_t misses = 0;      // requests that went to the system allocator
};
StorageCacheStats storage_cache_stats();
// Whether freed blocks are cached (false under ASan or ATTN_NO_CACHE).
bool storage_cache_enabled();
// Upper bound on cached free bytes.
size_t storage_cache_limit();
// Frees every cached block back to the system.
void storage_cache_release();

}  // namespace attn
