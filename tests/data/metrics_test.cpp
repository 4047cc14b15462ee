#include "attn/data/metrics.h"

#include <gtest/gtest.h>

#include <string>

#include "attn/core/error.h"

namespace attn::data {

namespace {
std::vector<char> chars(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }
}  // namespace

TEST(Metrics, EditDistance) {
  EXPECT_EQ(edit_distance(chars("kitten"), chars("sitting")), 3);
  EXPECT_EQ(edit_distance(chars(""), chars("abc")), 3);
  EXPECT_EQ(edit_distance(chars("abc"), chars("")), 3);
  EXPECT_EQ(edit_distance(chars("abc"), chars("abc")), 0);
  EXPECT_EQ(edit_distance(chars("flaw"), chars("lawn")), 2);
  EXPECT_EQ(edit_distance(chars("ab"), chars("ba")), 2);  // no transpositions
  EXPECT_EQ(edit_distance(std::vector<int32_t>{1, 2, 3}, std::vector<int32_t>{1, 3}), 1);
}

TEST(Metrics, WordCorrectIfItMatchesAnyReference) {
  WordScore s = score_word({5, 6, 7}, {{5, 6}, {5, 6, 7}});
  EXPECT_FALSE(s.wrong);
  EXPECT_EQ(s.distance, 0);
  EXPECT_EQ(s.ref_length, 3);
  s = score_word({5, 9}, {{5, 6, 7}, {5, 6}});
  EXPECT_TRUE(s.wrong);
  EXPECT_EQ(s.distance, 1);
  EXPECT_EQ(s.ref_length, 2);  // the closest reference's length
  // Ties: the first closest reference counts (Python's min keeps the first).
  s = score_word({1}, {{2, 3}, {2}, {3}});
  EXPECT_EQ(s.distance, 1);
  EXPECT_EQ(s.ref_length, 1);
  s = score_word({1, 2}, {{1, 2, 3, 4}, {1}});  // distances 2 and 1
  EXPECT_EQ(s.distance, 1);
  EXPECT_EQ(s.ref_length, 1);
  EXPECT_THROW(score_word({1}, {}), Error);
}

TEST(Metrics, ScoreAggregates) {
  // Word 1 right (0 / 3), word 2 one substitution (1 / 4), word 3 empty hyp (2 / 2).
  std::vector<WordScore> w = {score_word({1, 2, 3}, {{1, 2, 3}}),
                              score_word({1, 2, 3, 9}, {{1, 2, 3, 4}}),
                              score_word({}, {{7, 8}})};
  ErrorRates r = score(w);
  EXPECT_EQ(r.words, 3);
  EXPECT_EQ(r.wrong_words, 2);
  EXPECT_DOUBLE_EQ(r.wer, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.per, 3.0 / 9.0);
  EXPECT_THROW(score({}), Error);
}

}  // namespace attn::data
