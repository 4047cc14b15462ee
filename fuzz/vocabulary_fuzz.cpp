// libFuzzer target for vocabulary JSON: any text must either load or throw attn::Error; a
// loaded vocabulary must be consistent (specials first, ids <-> symbols) and round-trip.
#include <cstdint>
#include <string>

#include "attn/core/error.h"
#include "attn/data/vocabulary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  attn::data::Vocabulary v;
  try {
    v = attn::data::Vocabulary::from_json(text, "fuzz.json");
  } catch (const attn::Error&) {
    return 0;
  }
  using V = attn::data::Vocabulary;
  if (v.size() < v.num_specials() || v.symbol(V::kPad) != V::kPadSymbol || v.symbol(V::kBos) != V::kBosSymbol ||
      v.symbol(V::kEos) != V::kEosSymbol)
    __builtin_trap();
  for (int32_t i = 0; i < v.size(); ++i)
    if (v.id(v.symbol(i)) != i) __builtin_trap();
  if (!(V::from_json(v.to_json(), "fuzz-roundtrip.json") == v)) __builtin_trap();
  return 0;
}
