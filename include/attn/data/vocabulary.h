// Vocabulary: symbols <-> integer ids for a sequence model.
//
// Ids 0, 1, 2 are always the specials <pad>, <bos>, <eos> (padding is id 0 everywhere in
// attn: Embedding padding_idx, masks, loss ignore_index). A vocabulary may also carry <unk>
// at id 3 (useful for sources); then unknown symbols map to it instead of throwing.
// Ordinary symbols follow in the order given (from_symbols sorts them, like the PyTorch
// G2P reference's `sorted(set(...))`).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace attn::data {

class Vocabulary {
 public:
  static constexpr int32_t kPad = 0;
  static constexpr int32_t kBos = 1;
  static constexpr int32_t kEos = 2;
  static constexpr int32_t kUnk = 3;  // only when has_unk()
  static constexpr const char* kPadSymbol = "<pad>";
  static constexpr const char* kBosSymbol = "<bos>";
  static constexpr const char* kEosSymbol = "<eos>";
  static constexpr const char* kUnkSymbol = "<unk>";

  // Specials only.
  explicit Vocabulary(bool with_unk = false);
  // Specials, then `symbols` in the given order. Throws attn::Error on a duplicate, an empty
  // symbol or a symbol spelled like a special.
  Vocabulary(const std::vector<std::string>& symbols, bool with_unk);
  // Specials, then the distinct `symbols` sorted bytewise.
  static Vocabulary from_symbols(std::vector<std::string> symbols, bool with_unk = false);
  // One symbol per distinct character (byte) of the given strings, sorted.
  static Vocabulary from_chars(const std::vector<std::string>& texts, bool with_unk = false);

  int64_t size() const { return static_cast<int64_t>(symbols_.size()); }
  bool has_unk() const { return has_unk_; }
  // Number of special ids (3, or 4 with <unk>); the first ordinary symbol has this id.
  int32_t num_specials() const { return has_unk_ ? 4 : 3; }
  bool contains(const std::string& symbol) const { return ids_.count(symbol) != 0; }
  // All symbols in id order (specials first).
  const std::vector<std::string>& symbols() const { return symbols_; }

  // The id of `symbol`; unknown symbols give <unk> when present, else attn::Error
  // "vocabulary: unknown symbol 'X' in 'context'" (context: the word being encoded).
  int32_t id(const std::string& symbol, const std::string& context = "") const;
  // Throws attn::Error for an id outside [0, size()).
  const std::string& symbol(int32_t id) const;

  // Symbols -> ids (no <bos>/<eos> added). `context` names the sequence in errors.
  std::vector<int32_t> encode(const std::vector<std::string>& symbols,
                              const std::string& context = "") const;
  // Each byte of `text` as a one-character symbol.
  std::vector<int32_t> encode_chars(const std::string& text) const;
  // Ids -> symbols, stopping at the first <eos> and skipping <pad>/<bos> (like the G2P
  // reference's strip()).
  std::vector<std::string> decode(const std::vector<int32_t>& ids) const;
  // decode() concatenated: for character vocabularies.
  std::string decode_chars(const std::vector<int32_t>& ids) const;

  // JSON: {"format": "attn-vocabulary", "version": 1, "unk": bool, "symbols": [...]}, the
  // symbols in id order including the specials. `origin` (a path) names errors.
  std::string to_json() const;
  static Vocabulary from_json(const std::string& text, const std::string& origin = "<json>");
  void save(const std::string& path) const;  // atomic write
  static Vocabulary load(const std::string& path);

  bool operator==(const Vocabulary& other) const {
    return has_unk_ == other.has_unk_ && symbols_ == other.symbols_;
  }

 private:
  void add(const std::string& symbol);
  std::vector<std::string> symbols_;
  std::unordered_map<std::string, int32_t> ids_;
  bool has_unk_ = false;
};

}  // namespace attn::data
