#include "attn/data/cmudict.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "attn/core/error.h"
#include "attn/data/sha1.h"

namespace attn::data {

namespace {

const std::string kSample = std::string(ATTN_SOURCE_DIR) + "/tests/data/testdata/cmudict_sample.txt";
const std::string kSampleTsv = std::string(ATTN_SOURCE_DIR) + "/tests/data/testdata/cmudict_sample.tsv";

std::string data_dir() {
  const char* env = std::getenv("ATTN_DATA_DIR");
  return env && *env ? std::string(env) : std::string(ATTN_SOURCE_DIR) + "/data";
}

Pronunciation P(std::initializer_list<const char*> ps) { return Pronunciation(ps.begin(), ps.end()); }

}  // namespace

// The sample holds one line of each kind (see the file); expected counts by hand:
// 26 lines (last without newline), 3 comments + 1 blank, 1 non-ASCII, 5 bad words
// ("!EXCLAMATION-POINT", "\"QUOTE", "3D", "WEIRD(X)", "WORD(1)(2)"), 2 malformed
// ("NOPHONES", "DIGITONLY  D 1"), 14 kept of which 2 repeat after destressing.
TEST(Cmudict, SampleCounts) {
  Cmudict d = Cmudict::read(kSample);
  const auto& st = d.stats();
  EXPECT_EQ(st.lines, 26);
  EXPECT_EQ(st.skipped_nonascii, 1);
  EXPECT_EQ(st.skipped_pattern, 5);
  EXPECT_EQ(st.malformed, 2);
  EXPECT_EQ(st.kept_lines, 14);
  EXPECT_EQ(st.dup_after_destress, 2);
  EXPECT_NE(st.first_malformed.find(kSample + ":15:"), std::string::npos) << st.first_malformed;
  EXPECT_NE(st.first_malformed.find("NOPHONES"), std::string::npos) << st.first_malformed;
  ASSERT_EQ(d.num_words(), 10);
  EXPECT_EQ(d.num_pronunciations(), 12);
}

TEST(Cmudict, SampleEntries) {
  Cmudict d = Cmudict::read(kSample);
  ASSERT_EQ(d.num_words(), 10);
  std::vector<std::string> words;
  for (const auto& e : d.entries()) words.push_back(e.word);
  EXPECT_EQ(words, (std::vector<std::string>{"a", "a's", "abc", "mc.donald", "co-op", "tab",
                                             "leading", "read", "lowercase", "zed"}));
  // Variants join their word in file order; stress digits are gone.
  EXPECT_EQ(d.entry("a").pronunciations, (std::vector<Pronunciation>{P({"AH"}), P({"EY"})}));
  EXPECT_EQ(d.entry("abc").pronunciations, (std::vector<Pronunciation>{P({"EY", "B", "IY", "S", "IY"})}));
  EXPECT_EQ(d.entry("read").pronunciations,
            (std::vector<Pronunciation>{P({"R", "EH", "D"}), P({"R", "IY", "D"})}));
  EXPECT_EQ(d.entry("tab").pronunciations, (std::vector<Pronunciation>{P({"T", "AE", "B"})}));
  EXPECT_EQ(d.entry("leading").pronunciations.size(), 1u);
  EXPECT_FALSE(d.contains("nophones"));
  EXPECT_FALSE(d.contains("3d"));
  EXPECT_THROW(d.entry("nophones"), Error);
}

TEST(Cmudict, KeepStress) {
  CmudictOptions o;
  o.keep_stress = true;
  Cmudict d = Cmudict::read(kSample, o);
  // With stress, ABC and ABC(2) differ, as do READ(1) and READ(2); DIGITONLY's "1" is still
  // not a phoneme.
  EXPECT_EQ(d.stats().dup_after_destress, 0);
  EXPECT_EQ(d.stats().malformed, 2);
  EXPECT_EQ(d.entry("abc").pronunciations.size(), 2u);
  EXPECT_EQ(d.entry("read").pronunciations,
            (std::vector<Pronunciation>{P({"R", "EH1", "D"}), P({"R", "IY1", "D"}), P({"R", "IY0", "D"})}));
}

TEST(Cmudict, TsvGivesTheSameDictionary) {
  Cmudict a = Cmudict::read(kSample);
  Cmudict b = Cmudict::read(kSampleTsv);
  ASSERT_EQ(b.num_words(), a.num_words());
  for (size_t i = 0; i < a.entries().size(); ++i) {
    EXPECT_EQ(b.entries()[i].word, a.entries()[i].word);
    EXPECT_EQ(b.entries()[i].pronunciations, a.entries()[i].pronunciations);
  }
  // Only the comment and blank lines are gone from the TSV.
  EXPECT_EQ(b.stats().lines, a.stats().lines - 4);
  EXPECT_EQ(b.stats().kept_lines, a.stats().kept_lines);
  EXPECT_EQ(b.stats().skipped_nonascii, a.stats().skipped_nonascii);
  EXPECT_EQ(b.stats().skipped_pattern, a.stats().skipped_pattern);
  EXPECT_EQ(b.stats().malformed, a.stats().malformed);
  EXPECT_EQ(b.stats().dup_after_destress, a.stats().dup_after_destress);
}

TEST(Cmudict, TsvWithoutTabIsMalformed) {
  CmudictOptions o;
  o.format = CmudictFormat::tsv;
  Cmudict d = Cmudict::parse("HELLO\tHH AH0 L OW1\nWORLD  W ER1 L D\n", "x.tsv", o);
  EXPECT_EQ(d.num_words(), 1);
  EXPECT_EQ(d.stats().malformed, 1);
  EXPECT_NE(d.stats().first_malformed.find("x.tsv:2: expected WORD<TAB>PHONEMES"), std::string::npos)
      << d.stats().first_malformed;
}

TEST(Cmudict, StrictModeThrowsNamingFileAndLine) {
  CmudictOptions o;
  o.strict = true;
  try {
    Cmudict::read(kSample, o);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(kSample + ":15: word 'NOPHONES' has no phonemes"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line";
  }
}

TEST(Cmudict, MissingFileSaysHowToFetch) {
  try {
    Cmudict::read("/nonexistent/dict.txt");
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("/nonexistent/dict.txt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("scripts/fetch-data"), std::string::npos) << msg;
  }
}

TEST(Cmudict, SplitOrdersBySha1) {
  Cmudict d = Cmudict::read(kSample);
  CmudictSplit s = split_words(d, 3, 2);
  ASSERT_EQ(s.test.size(), 3u);
  ASSERT_EQ(s.dev.size(), 2u);
  ASSERT_EQ(s.train.size(), 5u);
  std::vector<std::string> all = s.test;
  all.insert(all.end(), s.dev.begin(), s.dev.end());
  all.insert(all.end(), s.train.begin(), s.train.end());
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(sha1_hex(all[i - 1]), sha1_hex(all[i]));
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  EXPECT_THROW(split_words(d, 8, 3), Error);
}

TEST(Cmudict, VocabulariesAndExamples) {
  Cmudict d = Cmudict::read(kSample);
  Vocabulary chars = d.char_vocabulary();
  Vocabulary phones = d.phoneme_vocabulary();
  // Characters: ' - . a b c d e g i l m n o p r s t w z
  EXPECT_EQ(chars.size(), 3 + 20);
  EXPECT_EQ(chars.symbol(3), "'");
  EXPECT_TRUE(phones.contains("IY"));
  EXPECT_FALSE(phones.contains("IY1"));
  auto ex = make_examples(d, {"read", "zed"}, chars, phones);
  ASSERT_EQ(ex.size(), 3u);  // read has two pronunciations
  EXPECT_EQ(chars.decode_chars(ex[0].src), "read");
  EXPECT_EQ(phones.decode(ex[1].tgt), (std::vector<std::string>{"R", "IY", "D"}));
  EXPECT_EQ(chars.decode_chars(ex[2].src), "zed");
}

// The real CMUdict (scripts/fetch-data): split sizes as the PyTorch reference reports them
// (torch_g2p.py load_cmudict/split_words, run once with /usr/bin/python3). The TSV and the
// word-by-word comparison of both files are left to tools/check_cmudict_split.py, to keep
// the suite fast under sanitizers.
TEST(Cmudict, RealDataSplitMatchesReference) {
  for (const std::string name : {"dict.txt"}) {
    std::string path = data_dir() + "/cmudict/" + name;
    if (!std::filesystem::exists(path)) {
      GTEST_SKIP() << path << " is absent (run scripts/fetch-data); split sizes not checked";
    }
    Cmudict d = Cmudict::read(path);
    const auto& st = d.stats();
    if (name == "dict.txt") {
      EXPECT_EQ(st.lines, 133784);
    }
    EXPECT_EQ(st.kept_lines, 133657) << path;
    EXPECT_EQ(st.skipped_nonascii, 1) << path;
    EXPECT_EQ(st.skipped_pattern + st.malformed, 126) << path;  // the reference lumps them
    EXPECT_EQ(st.dup_after_destress, 315) << path;
    ASSERT_EQ(d.num_words(), 124890) << path;
    EXPECT_EQ(d.num_pronunciations(), 133342) << path;
    CmudictSplit s = split_words(d);
    ASSERT_EQ(s.test.size(), 12000u);
    ASSERT_EQ(s.dev.size(), 3000u);
    ASSERT_EQ(s.train.size(), 109890u);
    int64_t train_prons = 0;
    for (const auto& w : s.train) train_prons += static_cast<int64_t>(d.entry(w).pronunciations.size());
    EXPECT_EQ(train_prons, 117316);
    EXPECT_EQ(std::vector<std::string>(s.test.begin(), s.test.begin() + 5),
              (std::vector<std::string>{"clemmer", "blocking", "hut", "builder's", "moralists"}));
    EXPECT_EQ(std::vector<std::string>(s.dev.begin(), s.dev.begin() + 3),
              (std::vector<std::string>{"beaudoin", "postrelle", "clinard"}));
    EXPECT_EQ(d.char_vocabulary().size(), 3 + 29);
    EXPECT_EQ(d.phoneme_vocabulary().size(), 3 + 39);
  }
}

}  // namespace attn::data
