// libFuzzer target for the safetensors parser: any input must either parse or throw
// attn::Error. A parsed file must serialise and parse back to the same tensors.
#include <cstdint>
#include <cstring>

#include "attn/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::io::Safetensors st;
  try {
    st = attn::io::parse_safetensors(data, size, "fuzz");
  } catch (const attn::Error&) {
    return 0;
  }
  attn::io::TensorList tl(st.tensors.begin(), st.tensors.end());
  const std::string bytes = attn::io::serialize_safetensors(tl, st.metadata);
  attn::io::Safetensors back = attn::io::parse_safetensors(bytes.data(), bytes.size(), "fuzz-roundtrip");
  if (back.tensors.size() != st.tensors.size() || back.metadata != st.metadata) __builtin_trap();
  for (const auto& [name, t] : st.tensors) {
    const attn::Tensor& u = back.at(name);
    if (u.shape() != t.shape() || u.dtype() != t.dtype() ||
        std::memcmp(u.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()) * attn::dtype_size(t.dtype())) != 0)
      __builtin_trap();
  }
  return 0;
}
