// libFuzzer target for the CMUdict reader (dict and TSV formats, lenient and strict): any
// text must either parse or throw attn::Error, and what is kept must satisfy the documented
// invariants (lowercase ^[a-z][a-z'.-]*$ words, non-empty pronunciations, counts that add up).
#include <cstdint>
#include <string>

#include "attn/core/error.h"
#include "attn/data/cmudict.h"

namespace {

bool word_ok(const std::string& w) {
  if (w.empty() || w[0] < 'a' || w[0] > 'z') return false;
  for (char c : w)
    if (!((c >= 'a' && c <= 'z') || c == '\'' || c == '.' || c == '-')) return false;
  return true;
}

void check(const attn::data::Cmudict& d) {
  int64_t prons = 0;
  for (const auto& e : d.entries()) {
    if (!word_ok(e.word) || e.pronunciations.empty() || !d.contains(e.word)) __builtin_trap();
    for (const auto& p : e.pronunciations) {
      if (p.empty()) __builtin_trap();
      for (const auto& ph : p)
        if (ph.empty()) __builtin_trap();
    }
    prons += static_cast<int64_t>(e.pronunciations.size());
  }
  const auto& s = d.stats();
  if (prons != d.num_pronunciations() || s.kept_lines - s.dup_after_destress != prons) __builtin_trap();
  if (s.kept_lines + s.skipped_nonascii + s.skipped_pattern + s.malformed > s.lines) __builtin_trap();
  // Vocabularies must build from whatever was kept.
  (void)d.char_vocabulary(true);
  (void)d.phoneme_vocabulary();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte picks the options; the rest is the file.
  const uint8_t sel = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  attn::data::CmudictOptions opt;
  opt.keep_stress = sel & 1;
  opt.strict = sel & 2;
  opt.format = (sel & 4) ? attn::data::CmudictFormat::tsv : attn::data::CmudictFormat::dict;
  try {
    check(attn::data::Cmudict::parse(text, "fuzz.txt", opt));
  } catch (const attn::Error&) {
  }
  return 0;
}
