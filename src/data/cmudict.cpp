#include "attn/data/cmudict.h"

#include <algorithm>
#include <set>
#include <string_view>

#include "attn/core/error.h"
#include "attn/data/sha1.h"
#include "attn/io/atomic_file.h"

namespace attn::data {

namespace {

// Python's str.split()/strip() whitespace, restricted to ASCII.
bool is_py_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

std::string_view strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_py_space(s[i])) ++i;
    size_t b = i;
    while (i < s.size() && !is_py_space(s[i])) ++i;
    if (i > b) parts.push_back(s.substr(b, i - b));
  }
  return parts;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// re.sub(r"\(\d+\)$", "", w)
std::string_view strip_variant(std::string_view w) {
  if (w.size() < 3 || w.back() != ')') return w;
  size_t i = w.size() - 1;  // at ')'
  size_t digits = 0;
  while (i > 0 && is_digit(w[i - 1])) {
    --i;
    ++digits;
  }
  if (digits == 0 || i == 0 || w[i - 1] != '(') return w;
  return w.substr(0, i - 1);
}

// ^[a-z][a-z'.\-]*$
bool word_ok(const std::string& w) {
  if (w.empty() || w[0] < 'a' || w[0] > 'z') return false;
  for (char c : w) {
    if (!((c >= 'a' && c <= 'z') || c == '\'' || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

Cmudict Cmudict::read(const std::string& path, const CmudictOptions& options) {
  CmudictOptions o = options;
  if (o.format == CmudictFormat::automatic) {
    bool tsv = path.size() >= 4 && path.compare(path.size() - 4, 4, ".tsv") == 0;
    o.format = tsv ? CmudictFormat::tsv : CmudictFormat::dict;
  }
  std::string text;
  try {
    text = io::read_file(path);
  } catch (const Error& e) {
    fail("cmudict: cannot read ", path, " (", e.what(),
         "); run scripts/fetch-data to download CMUdict");
  }
  return parse(text, path, o);
}

Cmudict Cmudict::parse(const std::string& text, const std::string& origin,
                       const CmudictOptions& options) {
  const bool tsv = options.format == CmudictFormat::tsv;
  Cmudict d;
  CmudictStats& st = d.stats_;
  auto malformed = [&](int64_t line_no, const std::string& problem) {
    std::string where = detail::concat(origin, ":", line_no, ": ", problem);
    if (options.strict) fail("cmudict: ", where);
    if (st.malformed == 0) st.first_malformed = where;
    ++st.malformed;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    std::string_view raw(text.data() + pos, end - pos);
    pos = end;
    ++st.lines;
    const int64_t line_no = st.lines;
    if (std::any_of(raw.begin(), raw.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
      ++st.skipped_nonascii;
      continue;
    }
    std::string_view line = strip(raw);
    if (line.empty() || line.substr(0, 3) == ";;;") continue;
    auto parts = split_ws(line);
    std::string word(strip_variant(parts[0]));
    for (char& c : word) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    if (!word_ok(word)) {
      ++st.skipped_pattern;
      continue;
    }
    if (parts.size() < 2) {
      malformed(line_no, detail::concat("word '", parts[0], "' has no phonemes"));
      continue;
    }
    if (tsv && line.find('\t') == std::string_view::npos) {
      malformed(line_no, "expected WORD<TAB>PHONEMES, found no tab");
      continue;
    }
    Pronunciation pron;
    pron.reserve(parts.size() - 1);
    bool bad = false;
    for (size_t i = 1; i < parts.size(); ++i) {
      std::string p;
      for (char c : parts[i]) {
        if (options.keep_stress || !is_digit(c)) p += c;
      }
      if (p.empty() || std::all_of(p.begin(), p.end(), is_digit)) {
        malformed(line_no, detail::concat("word '", parts[0], "' has phoneme '", parts[i],
                                          "' with no letters"));
        bad = true;
        break;
      }
      pron.push_back(std::move(p));
    }
    if (bad) continue;
    ++st.kept_lines;
    auto [it, inserted] = d.index_.emplace(word, d.entries_.size());
    if (inserted) d.entries_.push_back(CmudictEntry{word, {}});
    auto& prons = d.entries_[it->second].pronunciations;
    if (std::find(prons.begin(), prons.end(), pron) != prons.end()) {
      ++st.dup_after_destress;
    } else {
      prons.push_back(std::move(pron));
    }
  }
  return d;
}

int64_t Cmudict::num_pronunciations() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += static_cast<int64_t>(e.pronunciations.size());
  return n;
}

const CmudictEntry& Cmudict::entry(const std::string& word) const {
  auto it = index_.find(word);
  ATTN_CHECK(it != index_.end(), "cmudict: word '", word, "' is not in the dictionary");
  return entries_[it->second];
}

Vocabulary Cmudict::char_vocabulary(bool with_unk) const {
  std::vector<std::string> words;
  words.reserve(entries_.size());
  for (const auto& e : entries_) words.push_back(e.word);
  return Vocabulary::from_chars(words, with_unk);
}

Vocabulary Cmudict::phoneme_vocabulary() const {
  std::set<std::string> phones;
  for (const auto& e : entries_) {
    for (const auto& p : e.pronunciations) phones.insert(p.begin(), p.end());
  }
  return Vocabulary(std::vector<std::string>(phones.begin(), phones.end()), false);
}

CmudictSplit split_words(const Cmudict& dict, int64_t n_test, int64_t n_dev) {
  ATTN_CHECK(n_test >= 0 && n_dev >= 0, "cmudict split: n_test ", n_test, " and n_dev ", n_dev,
             " must be >= 0");
  ATTN_CHECK(dict.num_words() >= n_test + n_dev, "cmudict split: ", dict.num_words(),
             " words but n_test + n_dev = ", n_test + n_dev);
  std::vector<std::pair<std::string, const std::string*>> keyed;
  keyed.reserve(dict.entries().size());
  for (const auto& e : dict.entries()) keyed.emplace_back(sha1_hex(e.word), &e.word);
  // Keys are distinct (distinct words); ties, if any, keep file order like Python's sort.
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  CmudictSplit s;
  for (size_t i = 0; i < keyed.size(); ++i) {
    auto& dst = static_cast<int64_t>(i) < n_test            ? s.test
                : static_cast<int64_t>(i) < n_test + n_dev ? s.dev
                                                           : s.train;
    dst.push_back(*keyed[i].second);
  }
  return s;
}

std::vector<SeqPair> make_examples(const Cmudict& dict, const std::vector<std::string>& words,
                                   const Vocabulary& chars, const Vocabulary& phonemes) {
  std::vector<SeqPair> out;
  for (const auto& w : words) {
    const auto& e = dict.entry(w);
    auto src = chars.encode_chars(w);
    for (const auto& p : e.pronunciations) out.push_back(SeqPair{src, phonemes.encode(p, w)});
  }
  return out;
}

}  // namespace attn::data
