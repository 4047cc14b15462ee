// libFuzzer target for the .npy parser: any input must either parse or throw attn::Error.
// A parsed array must encode and parse back to the same shape, dtype and bytes.
#include <cstdint>
#include <cstring>
#include <string>

#include "attn/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::Tensor t;
  try {
    t = attn::io::parse_npy(data, size, "fuzz.npy");
  } catch (const attn::Error&) {
    return 0;
  }
  if (!t.is_contiguous()) __builtin_trap();
  std::string bytes;
  attn::io::encode_npy(t, [&](const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); });
  const attn::Tensor back = attn::io::parse_npy(bytes.data(), bytes.size(), "fuzz-roundtrip.npy");
  if (back.shape() != t.shape() || back.dtype() != t.dtype() ||
      std::memcmp(back.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()) * attn::dtype_size(t.dtype())) != 0)
    __builtin_trap();
  return 0;
}
