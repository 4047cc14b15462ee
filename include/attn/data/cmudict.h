// CMUdict (0.7b) for grapheme-to-phoneme: reading, filtering and the train/dev/test split,
// replicating load_cmudict() and split_words() of the PyTorch reference
// (/work/shared/peers/torch_g2p.py) exactly on the real file:
//   - a line that is not pure ASCII is skipped (skipped_nonascii);
//   - surrounding whitespace is stripped; blank lines and ";;;" comments are ignored;
//   - the first field is the word: a trailing "(N)" variant suffix is removed, then it is
//     lowercased; it must match ^[a-z][a-z'.-]*$ (else skipped_pattern);
//   - the other fields are the phonemes, with every digit (stress) removed unless
//     keep_stress; a word without phonemes is *malformed* (the reference counts these under
//     skipped_pattern: its skipped_pattern = ours + malformed), as is a phoneme that is only
//     digits (the reference would keep an empty phoneme; the real file has none);
//   - the distinct pronunciations of a word are kept together in file order
//     (dup_after_destress counts the repeats dropped);
//   - split: unique words sorted by the hex SHA-1 of the lowercase word; the first 12,000
//     are test, the next 3,000 dev, the rest train.
// Two file formats: the raw dict.txt ("WORD  PH PH", variants "WORD(1)") and the TSV written
// by scripts/fetch-data ("WORD(1)<TAB>PH PH", same content, no comments). Whitespace is
// Python's str.split() whitespace (space, \t, \n, \r, \v, \f, \x1c-\x1f).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "attn/data/batching.h"
#include "attn/data/vocabulary.h"

namespace attn::data {

enum class CmudictFormat { automatic, dict, tsv };  // automatic: ".tsv" suffix -> tsv

struct CmudictOptions {
  bool keep_stress = false;
  // Throw attn::Error (naming file and line) at the first malformed line instead of
  // counting it.
  bool strict = false;
  CmudictFormat format = CmudictFormat::automatic;
};

struct CmudictStats {
  int64_t lines = 0;               // physical lines read (including blank and comment lines)
  int64_t kept_lines = 0;          // lines that gave a pronunciation (duplicates included)
  int64_t skipped_nonascii = 0;
  int64_t skipped_pattern = 0;     // word not ^[a-z][a-z'.-]*$ after variant strip + lowercase
  int64_t malformed = 0;           // word fine but no phonemes / a digits-only phoneme
  int64_t dup_after_destress = 0;  // kept lines whose pronunciation the word already had
  std::string first_malformed;     // "path:line: problem" of the first malformed line
};

using Pronunciation = std::vector<std::string>;

struct CmudictEntry {
  std::string word;                           // lowercase, no variant suffix
  std::vector<Pronunciation> pronunciations;  // distinct, in file order
};

class Cmudict {
 public:
  // Reads and filters a file; throws attn::Error naming the path when it cannot be read.
  static Cmudict read(const std::string& path, const CmudictOptions& options = {});
  // Same on text in memory; `origin` names errors; format automatic means dict.
  static Cmudict parse(const std::string& text, const std::string& origin,
                       const CmudictOptions& options = {});

  // Words in first-seen file order.
  const std::vector<CmudictEntry>& entries() const { return entries_; }
  const CmudictStats& stats() const { return stats_; }
  int64_t num_words() const { return static_cast<int64_t>(entries_.size()); }
  int64_t num_pronunciations() const;
  bool contains(const std::string& word) const { return index_.count(word) != 0; }
  // Throws attn::Error naming the word when absent.
  const CmudictEntry& entry(const std::string& word) const;

  // Character vocabulary of all words and phoneme vocabulary of all pronunciations
  // (sorted, as the reference builds c2i / p2i; ids differ by the specials).
  Vocabulary char_vocabulary(bool with_unk = false) const;
  Vocabulary phoneme_vocabulary() const;

 private:
  std::vector<CmudictEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  CmudictStats stats_;
};

struct CmudictSplit {
  std::vector<std::string> test, dev, train;
};

// Unique words sorted by sha1_hex(word): [0, n_test) test, [n_test, n_test + n_dev) dev,
// the rest train. Throws when there are fewer than n_test + n_dev words.
CmudictSplit split_words(const Cmudict& dict, int64_t n_test = 12000, int64_t n_dev = 3000);

// One (characters, phonemes) pair per pronunciation of each word, in the order given (the
// reference's train_ex). Unknown characters or phonemes throw, naming the word.
std::vector<SeqPair> make_examples(const Cmudict& dict, const std::vector<std::string>& words,
                                   const Vocabulary& chars, const Vocabulary& phonemes);

}  // namespace attn::data
