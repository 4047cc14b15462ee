#include "attn/data/vocabulary.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/core/error.h"
#include "attn/io/atomic_file.h"

namespace attn::data {

namespace {
bool is_special(const std::string& s) {
  return s == Vocabulary::kPadSymbol || s == Vocabulary::kBosSymbol ||
         s == Vocabulary::kEosSymbol || s == Vocabulary::kUnkSymbol;
}
}  // namespace

Vocabulary::Vocabulary(bool with_unk) : has_unk_(with_unk) {
  add(kPadSymbol);
  add(kBosSymbol);
  add(kEosSymbol);
  if (with_unk) add(kUnkSymbol);
}

Vocabulary::Vocabulary(const std::vector<std::string>& symbols, bool with_unk)
    : Vocabulary(with_unk) {
  for (const auto& s : symbols) {
    ATTN_CHECK(!s.empty(), "Vocabulary: empty symbol at position ", symbols_.size());
    ATTN_CHECK(!is_special(s), "Vocabulary: symbol '", s, "' is spelled like a special");
    ATTN_CHECK(!contains(s), "Vocabulary: duplicate symbol '", s, "'");
    add(s);
  }
}

void Vocabulary::add(const std::string& symbol) {
  ids_.emplace(symbol, static_cast<int32_t>(symbols_.size()));
  symbols_.push_back(symbol);
}

Vocabulary Vocabulary::from_symbols(std::vector<std::string> symbols, bool with_unk) {
  std::sort(symbols.begin(), symbols.end());
  symbols.erase(std::unique(symbols.begin(), symbols.end()), symbols.end());
  return Vocabulary(symbols, with_unk);
}

Vocabulary Vocabulary::from_chars(const std::vector<std::string>& texts, bool with_unk) {
  std::set<unsigned char> chars;
  for (const auto& t : texts) chars.insert(t.begin(), t.end());
  std::vector<std::string> symbols;
  for (unsigned char c : chars) symbols.emplace_back(1, static_cast<char>(c));
  return Vocabulary(symbols, with_unk);
}

int32_t Vocabulary::id(const std::string& symbol, const std::string& context) const {
  auto it = ids_.find(symbol);
  if (it != ids_.end()) return it->second;
  if (has_unk_) return kUnk;
  if (context.empty()) fail("vocabulary: unknown symbol '", symbol, "'");
  fail("vocabulary: unknown symbol '", symbol, "' in '", context, "'");
}

const std::string& Vocabulary::symbol(int32_t id) const {
  ATTN_CHECK(id >= 0 && id < size(), "vocabulary: id ", id, " out of range [0, ", size(), ")");
  return symbols_[static_cast<size_t>(id)];
}

std::vector<int32_t> Vocabulary::encode(const std::vector<std::string>& symbols,
                                        const std::string& context) const {
  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) ids.push_back(id(s, context));
  return ids;
}

std::vector<int32_t> Vocabulary::encode_chars(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(id(std::string(1, c), text));
  return ids;
}

std::vector<std::string> Vocabulary::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> out;
  for (int32_t i : ids) {
    if (i == kEos) break;
    if (i == kPad || i == kBos) continue;
    out.push_back(symbol(i));
  }
  return out;
}

std::string Vocabulary::decode_chars(const std::vector<int32_t>& ids) const {
  std::string s;
  for (const auto& sym : decode(ids)) s += sym;
  return s;
}

std::string Vocabulary::to_json() const {
  nlohmann::json j;
  j["format"] = "attn-vocabulary";
  j["version"] = 1;
  j["unk"] = has_unk_;
  j["symbols"] = symbols_;
  return j.dump(1) + "\n";
}

Vocabulary Vocabulary::from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("vocabulary: ", origin, ": not valid JSON (", e.what(), ")");
  }
  // Types are checked before any get/value: nlohmann throws its own type_error otherwise (found
  // by fuzz/vocabulary_fuzz.cpp: {"format": ["x"]}).
  ATTN_CHECK(j.is_object() && j.contains("format") && j["format"].is_string() &&
                 j["format"].get<std::string>() == "attn-vocabulary",
             "vocabulary: ", origin, ": not an attn vocabulary (missing \"format\": \"attn-vocabulary\")");
  ATTN_CHECK(j.contains("version") && j["version"].is_number_integer() && j["version"].get<int64_t>() == 1,
             "vocabulary: ", origin, ": unsupported version ", j.contains("version") ? j["version"].dump() : "(none)",
             " (expected 1)");
  ATTN_CHECK(j.contains("unk") && j["unk"].is_boolean(), "vocabulary: ", origin,
             ": \"unk\" must be true or false");
  ATTN_CHECK(j.contains("symbols") && j["symbols"].is_array(), "vocabulary: ", origin,
             ": \"symbols\" must be an array of strings");
  bool unk = j["unk"].get<bool>();
  std::vector<std::string> all;
  for (const auto& s : j["symbols"]) {
    ATTN_CHECK(s.is_string(), "vocabulary: ", origin, ": symbol ", all.size(), " is not a string");
    all.push_back(s.get<std::string>());
  }
  Vocabulary specials(unk);
  size_t ns = specials.symbols().size();
  ATTN_CHECK(all.size() >= ns && std::equal(specials.symbols().begin(), specials.symbols().end(),
                                            all.begin()),
             "vocabulary: ", origin, ": the first symbols must be the specials <pad> <bos> <eos>",
             unk ? " <unk>" : "");
  try {
    return Vocabulary(std::vector<std::string>(all.begin() + static_cast<ptrdiff_t>(ns), all.end()),
                      unk);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
}

void Vocabulary::save(const std::string& path) const { io::write_file_atomic(path, to_json()); }

Vocabulary Vocabulary::load(const std::string& path) {
  return from_json(io::read_file(path), path);
}

}  // namespace attn::data
