#include "attn/data/vocabulary.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "attn/core/error.h"
#include "attn/io/atomic_file.h"

namespace attn::data {

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attn_vocab_test_" + name)).string();
}
}  // namespace

TEST(Vocabulary, SpecialsComeFirst) {
  Vocabulary v = Vocabulary::from_symbols({"b", "a", "c", "a"});
  ASSERT_EQ(v.size(), 6);
  EXPECT_EQ(v.symbol(0), "<pad>");
  EXPECT_EQ(v.symbol(1), "<bos>");
  EXPECT_EQ(v.symbol(2), "<eos>");
  EXPECT_EQ(v.id("a"), 3);
  EXPECT_EQ(v.id("b"), 4);
  EXPECT_EQ(v.id("c"), 5);
  EXPECT_EQ(v.num_specials(), 3);
  EXPECT_FALSE(v.has_unk());
}

TEST(Vocabulary, EncodeDecodeRoundTrip) {
  Vocabulary v = Vocabulary::from_chars({"hello", "world"});
  auto ids = v.encode_chars("world");
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(v.decode_chars(ids), "world");
  // decode stops at <eos> and skips <pad>/<bos>.
  std::vector<int32_t> with_specials = {Vocabulary::kBos, ids[0], Vocabulary::kPad, ids[1],
                                        Vocabulary::kEos, ids[2]};
  EXPECT_EQ(v.decode_chars(with_specials), "wo");
}

TEST(Vocabulary, UnknownSymbolNamesSymbolAndWord) {
  Vocabulary v = Vocabulary::from_symbols({"AH", "B"});
  std::string msg = error_of([&] { v.encode({"B", "ZZ"}, "bzz"); });
  EXPECT_NE(msg.find("'ZZ'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'bzz'"), std::string::npos) << msg;
  Vocabulary c = Vocabulary::from_chars({"abc"});
  msg = error_of([&] { c.encode_chars("cab!"); });
  EXPECT_NE(msg.find("'!'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'cab!'"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { v.symbol(99); }).find("out of range"), std::string::npos);
}

TEST(Vocabulary, UnkMapsUnknownSymbols) {
  Vocabulary v = Vocabulary::from_chars({"ab"}, /*with_unk=*/true);
  ASSERT_EQ(v.size(), 6);
  EXPECT_EQ(v.symbol(Vocabulary::kUnk), "<unk>");
  EXPECT_EQ(v.id("a"), 4);
  EXPECT_EQ(v.encode_chars("a?b"), (std::vector<int32_t>{4, Vocabulary::kUnk, 5}));
}

TEST(Vocabulary, RejectsDuplicatesAndSpecials) {
  EXPECT_NE(error_of([] { Vocabulary({"a", "a"}, false); }).find("duplicate symbol 'a'"),
            std::string::npos);
  EXPECT_NE(error_of([] { Vocabulary({"<eos>"}, false); }).find("special"), std::string::npos);
  EXPECT_NE(error_of([] { Vocabulary({""}, false); }).find("empty symbol"), std::string::npos);
}

TEST(Vocabulary, SaveLoadJson) {
  Vocabulary v = Vocabulary::from_symbols({"AA", "AE", "ZH"}, true);
  std::string path = temp_path("ok.json");
  v.save(path);
  Vocabulary w = Vocabulary::load(path);
  ASSERT_EQ(w.size(), v.size());
  EXPECT_TRUE(w == v);
  EXPECT_EQ(w.id("ZH"), 6);
  std::filesystem::remove(path);
}

TEST(Vocabulary, LoadErrorsNameTheFile) {
  std::string path = temp_path("bad.json");
  io::write_file_atomic(path, std::string("{not json"));
  std::string msg = error_of([&] { Vocabulary::load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  io::write_file_atomic(path, std::string(R"({"format":"attn-vocabulary","version":1,"unk":false,"symbols":["<pad>","<bos>","x"]})"));
  msg = error_of([&] { Vocabulary::load(path); });
  EXPECT_NE(msg.find("specials"), std::string::npos) << msg;
  io::write_file_atomic(path, std::string(R"({"format":"attn-vocabulary","version":1,"unk":false,"symbols":["<pad>","<bos>","<eos>","x","x"]})"));
  msg = error_of([&] { Vocabulary::load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("duplicate symbol 'x'"), std::string::npos) << msg;
  std::filesystem::remove(path);
  msg = error_of([&] { Vocabulary::load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

}  // namespace attn::data
