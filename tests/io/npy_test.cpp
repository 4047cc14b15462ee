#include "attn/io/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "attn/core/rng.h"
#include "attn/io/atomic_file.h"

namespace attn::io {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/attn_npy_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream f(path(name), std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    return out;
  }
  std::string dir_;
};

// A .npy file built by hand: magic, version, header length, `dict` padded to 64 with '\n'.
std::string npy_bytes(int major, const std::string& dict, const std::string& data, int minor = 0) {
  const size_t pre = major == 1 ? 10 : 12;
  std::string header = dict;
  size_t total = pre + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  const size_t n = header.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((n >> 16) & 0xff);
    out += static_cast<char>((n >> 24) & 0xff);
  }
  return out + header + data;
}

std::string dict_for(const std::string& descr, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// Expects attn::Error whose message starts with `name` and contains every `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::string& name, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected attn::Error containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(name, 0), 0u) << "message does not start with the file name: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST_F(NpyTest, RoundTripF32EveryRank) {
  Rng rng(1);
  for (const Shape& shape : {Shape{}, Shape{0}, Shape{3, 0, 2}, Shape{5}, Shape{2, 3}, Shape{2, 3, 4, 5}}) {
    Tensor t = Tensor::empty(shape);
    std::vector<float> values;
    for (int64_t i = 0; i < t.numel(); ++i) values.push_back(static_cast<float>(rng.normal()));
    t = Tensor::from_vector(values, shape);
    const std::string p = path("t.npy");
    write_npy(p, t);
    NpyInfo info;
    Tensor back = read_npy(p, &info);
    ASSERT_EQ(back.shape(), shape) << shape_str(shape);
    EXPECT_EQ(back.dtype(), DType::f32);
    EXPECT_EQ(back.to_vector(), values);
    EXPECT_EQ(info.major_version, 1);
    EXPECT_EQ(info.descr, "<f4");
    EXPECT_EQ(info.shape, shape);
    EXPECT_TRUE(info.conversion.empty());
  }
}

TEST_F(NpyTest, RoundTripI32) {
  Tensor t = Tensor::from_vector_i32({-2147483647 - 1, -1, 0, 7, 2147483647, 42}, {3, 2});
  write_npy(path("i.npy"), t);
  NpyInfo info;
  Tensor back = read_npy(path("i.npy"), &info);
  ASSERT_EQ(back.shape(), (Shape{3, 2}));
  ASSERT_EQ(back.dtype(), DType::i32);
  EXPECT_EQ(info.descr, "<i4");
  EXPECT_EQ(std::vector<int32_t>(back.data<int32_t>(), back.data<int32_t>() + 6),
            std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + 6));
}

TEST_F(NpyTest, WritesBf16AsExactF32) {
  Tensor t = Tensor::from_vector({1.0f, -2.5f, 3.140625f, 1e-3f}, {2, 2}).to(DType::bf16);
  write_npy(path("b.npy"), t);
  NpyInfo info;
  Tensor back = read_npy(path("b.npy"), &info);
  EXPECT_EQ(info.descr, "<f4");
  ASSERT_EQ(back.shape(), (Shape{2, 2}));
  EXPECT_EQ(back.to_vector(), t.to_vector());  // bf16 -> f32 is exact
}

TEST_F(NpyTest, WritesF64AsF8) {
  Tensor t = Tensor::from_vector({0.1f, -3.f}, {2}).to(DType::f64);
  t.data<double>()[0] = 0.1;  // a double that float cannot hold exactly
  write_npy(path("d.npy"), t);
  const std::string bytes = read_file(path("d.npy"));
  ASSERT_EQ(bytes.size(), 128u + 16u);
  double first;
  std::memcpy(&first, bytes.data() + 128, 8);
  EXPECT_EQ(first, 0.1);  // written exactly
  NpyInfo info;
  Tensor back = read_npy(path("d.npy"), &info);
  EXPECT_EQ(info.descr, "<f8");
  EXPECT_EQ(info.conversion, "float64 to float32");
  ASSERT_EQ(back.shape(), (Shape{2}));
  EXPECT_EQ(back.to_vector(), (std::vector<float>{0.1f, -3.f}));
}

TEST_F(NpyTest, WritesStridedViewsInLogicalOrder) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  Tensor view = t.transpose(0, 1).slice(0, 1, 3);  // [2, 3], not contiguous
  ASSERT_FALSE(view.is_contiguous());
  write_npy(path("v.npy"), view);
  Tensor back = read_npy(path("v.npy"));
  ASSERT_EQ(back.shape(), (Shape{2, 3}));
  EXPECT_EQ(back.to_vector(), (std::vector<float>{1, 5, 9, 2, 6, 10}));
}

TEST_F(NpyTest, WrittenHeaderIsNumpysLayout) {
  write_npy(path("h.npy"), Tensor::zeros({7}));
  const std::string bytes = read_file(path("h.npy"));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t hl = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + hl) % 64, 0u);  // numpy aligns the data to 64 bytes
  const std::string header = bytes.substr(10, hl);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.find("{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }"), 0u) << header;
  EXPECT_EQ(bytes.size(), 10 + hl + 7 * 4);
}

TEST_F(NpyTest, HugeHeaderIsWrittenAsVersion2) {
  Shape shape(22000, 1);  // the header's shape tuple alone is > 65535 bytes
  shape[5] = 3;
  Tensor t = Tensor::from_vector({1.5f, -2.f, 4.f}, shape);
  write_npy(path("big.npy"), t);
  const std::string bytes = read_file(path("big.npy"));
  EXPECT_EQ(bytes[6], 2);
  NpyInfo info;
  Tensor back = read_npy(path("big.npy"), &info);
  EXPECT_EQ(info.major_version, 2);
  ASSERT_EQ(back.shape(), shape);
  EXPECT_EQ(back.to_vector(), (std::vector<float>{1.5f, -2.f, 4.f}));
}

// Every readable dtype in every format version, with the conversion it reports.
TEST_F(NpyTest, ReadsEveryDtypeInEveryVersion) {
  struct Case {
    std::string descr, data, conversion;
    DType dtype;
    std::vector<float> expect;
  };
  const std::vector<Case> cases = {
      {"<f4", raw<float>({1.5f, -2.f, 0.f, 3.25f}), "", DType::f32, {1.5f, -2.f, 0.f, 3.25f}},
      {"<f8", raw<double>({1.5, -2.0, 0.1, 3.25}), "float64 to float32", DType::f32, {1.5f, -2.f, 0.1f, 3.25f}},
      {"<i4", raw<int32_t>({1, -2, 0, 3}), "", DType::i32, {1, -2, 0, 3}},
      {"<i8", raw<int64_t>({1, -2, 0, 2147483647}), "int64 to int32", DType::i32, {1, -2, 0, 2147483647.f}},
      {"<i2", raw<int16_t>({1, -2, 0, 300}), "int16 to int32", DType::i32, {1, -2, 0, 300}},
      {"<u2", raw<uint16_t>({1, 2, 0, 65535}), "uint16 to int32", DType::i32, {1, 2, 0, 65535}},
      {"<u4", raw<uint32_t>({1, 2, 0, 7}), "uint32 to int32", DType::i32, {1, 2, 0, 7}},
      {"<u8", raw<uint64_t>({1, 2, 0, 7}), "uint64 to int32", DType::i32, {1, 2, 0, 7}},
      {"|b1", raw<uint8_t>({1, 0, 0, 1}), "bool to int32", DType::i32, {1, 0, 0, 1}},
      {"|u1", raw<uint8_t>({1, 255, 0, 3}), "uint8 to int32", DType::i32, {1, 255, 0, 3}},
      {"|i1", raw<int8_t>({1, -128, 0, 3}), "int8 to int32", DType::i32, {1, -128, 0, 3}},
  };
  for (int major : {1, 2, 3}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.descr + " version " + std::to_string(major));
      const std::string p = write("x.npy", npy_bytes(major, dict_for(c.descr, "(2, 2)"), c.data));
      NpyInfo info;
      Tensor t = read_npy(p, &info);
      ASSERT_EQ(t.shape(), (Shape{2, 2}));
      EXPECT_EQ(t.dtype(), c.dtype);
      EXPECT_EQ(t.to_vector(), c.expect);
      EXPECT_EQ(info.major_version, major);
      EXPECT_EQ(info.descr, c.descr);
      EXPECT_EQ(info.conversion, c.conversion);
    }
  }
}

TEST_F(NpyTest, ParsesHeaderVariants) {
  const std::string data = raw<float>({1, 2, 3, 4, 5, 6});
  const std::vector<std::string> dicts = {
      // Python 2 numpy: longs, and keys in another order.
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
      "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}",
      "{ 'descr' : '<f4' ,\t'fortran_order':False,'shape':[2,3]}",
      "{'descr': u'<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': {'a': (1.5e3, None, True)}}",
  };
  for (const auto& d : dicts) {
    SCOPED_TRACE(d);
    const std::string bytes = npy_bytes(1, d, data);
    Tensor t = parse_npy(bytes.data(), bytes.size(), "mem");
    ASSERT_EQ(t.shape(), (Shape{2, 3}));
    EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  }
  // Version 3.0 allows UTF-8 in the header.
  const std::string utf8 = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'note': 'Gr\xc3\xbc\xc3\x9f\x65'}";
  Tensor t = read_npy(write("u.npy", npy_bytes(3, utf8, data)));
  EXPECT_EQ(t.shape(), (Shape{6}));
}

// ---- malformed files: each a real file on disk, each error names the file and the problem ----

TEST_F(NpyTest, RejectsBadMagicAndVersion) {
  const std::string good = npy_bytes(1, dict_for("<f4", "(1,)"), raw<float>({1}));
  std::string p = write("magic.npy", "PK\x03\x04 this is a zip file, not npy");
  expect_error([&] { read_npy(p); }, p, {"not a .npy file", "magic"});
  p = write("empty.npy", "");
  expect_error([&] { read_npy(p); }, p, {"not a .npy file"});
  p = write("short.npy", "\x93NUM");
  expect_error([&] { read_npy(p); }, p, {"not a .npy file", "too short"});
  for (auto [major, minor] : {std::pair{4, 0}, std::pair{1, 1}, std::pair{0, 0}}) {
    std::string bad = good;
    bad[6] = static_cast<char>(major);
    bad[7] = static_cast<char>(minor);
    p = write("version.npy", bad);
    expect_error([&] { read_npy(p); }, p,
                 {"unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor)});
  }
  p = write("nolen.npy", good.substr(0, 9));
  expect_error([&] { read_npy(p); }, p, {"truncated .npy preamble"});
}

TEST_F(NpyTest, RejectsHeaderPastTheEnd) {
  std::string bytes = npy_bytes(1, dict_for("<f4", "(1,)"), "");
  const std::string p = write("hl.npy", bytes.substr(0, 40));
  const size_t hl = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  expect_error([&] { read_npy(p); }, p,
               {"header says " + std::to_string(hl) + " bytes but the file has 30"});
  // Version 2.0: a 32-bit length far past the end.
  std::string v2 = npy_bytes(2, dict_for("<f4", "(1,)"), raw<float>({1}));
  v2[11] = '\x7f';
  const std::string p2 = write("hl2.npy", v2);
  expect_error([&] { read_npy(p2); }, p2, {"header says", "bytes but the file has"});
}

TEST_F(NpyTest, RejectsHeadersThatAreNotDictLiterals) {
  const std::string data = raw<float>({1});
  const std::vector<std::string> bad = {
      "{'descr' '<f4', 'fortran_order': False, 'shape': (1,), }",  // missing ':'
      "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }",  // unterminated string
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ",   // unclosed dict
      "{'descr': '<f4', 'fortran_order': Fals, 'shape': (1,)}",      // bad name
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",   // trailing text
      "{1: '<f4'}",                                                  // non-string key
      "",                                                            // nothing
      std::string(5000, '(') + std::string(5000, ')'),               // nesting bomb
  };
  for (const auto& d : bad) {
    SCOPED_TRACE(d.substr(0, 60));
    const std::string p = write("dict.npy", npy_bytes(1, d, data));
    expect_error([&] { read_npy(p); }, p, {"header is not a valid Python dict literal"});
  }
  const std::string p = write("list.npy", npy_bytes(1, "['descr', '<f4']", data));
  expect_error([&] { read_npy(p); }, p, {"header is not a Python dict literal"});
}

TEST_F(NpyTest, RejectsMissingKeys) {
  const std::string data = raw<float>({1});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"descr", "{'fortran_order': False, 'shape': (1,), }"},
      {"fortran_order", "{'descr': '<f4', 'shape': (1,), }"},
      {"shape", "{'descr': '<f4', 'fortran_order': False, }"},
  };
  for (const auto& [key, d] : cases) {
    const std::string p = write("keys.npy", npy_bytes(1, d, data));
    expect_error([&] { read_npy(p); }, p, {"header has no '" + key + "' key"});
  }
}

TEST_F(NpyTest, RejectsFortranOrder) {
  const std::string p = write(
      "f.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", raw<float>({1, 2, 3, 4})));
  expect_error([&] { read_npy(p); }, p, {"fortran_order is True", "C order"});
  const std::string p2 = write(
      "f2.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", raw<float>({1})));
  expect_error([&] { read_npy(p2); }, p2, {"'fortran_order' must be True or False"});
}

TEST_F(NpyTest, RejectsBigEndianAndUnsupportedDtypes) {
  std::string p = write("be.npy", npy_bytes(1, dict_for(">f4", "(1,)"), std::string(4, '\0')));
  expect_error([&] { read_npy(p); }, p, {"big-endian dtype '>f4'"});
  p = write("be8.npy", npy_bytes(1, dict_for(">i8", "(1,)"), std::string(8, '\0')));
  expect_error([&] { read_npy(p); }, p, {"big-endian dtype '>i8'"});
  for (const std::string descr : {"<c8", "<f2", "|O", "|S5", "<U3", "<M8[ns]", "", "<f16"}) {
    p = write("dt.npy", npy_bytes(1, dict_for(descr, "(1,)"), std::string(8, '\0')));
    expect_error([&] { read_npy(p); }, p, {"unsupported dtype '" + descr + "'"});
  }
  p = write("rec.npy", npy_bytes(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                                 std::string(4, '\0')));
  expect_error([&] { read_npy(p); }, p, {"unsupported dtype", "structured"});
}

TEST_F(NpyTest, RejectsBadShapes) {
  std::string p = write("neg.npy", npy_bytes(1, dict_for("<f4", "(2, -3)"), ""));
  expect_error([&] { read_npy(p); }, p, {"negative dimension -3"});
  p = write("ovf.npy", npy_bytes(1, dict_for("<f4", "(99999999999999999999,)"), ""));
  expect_error([&] { read_npy(p); }, p, {"dimension 99999999999999999999", "overflows"});
  p = write("big.npy", npy_bytes(1, dict_for("<f4", "(4294967296, 4294967296)"), ""));
  expect_error([&] { read_npy(p); }, p, {"shape (4294967296, 4294967296) is too large"});
  p = write("flt.npy", npy_bytes(1, dict_for("<f4", "(2.0,)"), raw<float>({1, 2})));
  expect_error([&] { read_npy(p); }, p, {"'shape' must be a tuple of integers"});
  p = write("str.npy", npy_bytes(1, dict_for("<f4", "'2'"), raw<float>({1, 2})));
  expect_error([&] { read_npy(p); }, p, {"'shape' must be a tuple of integers"});
}

TEST_F(NpyTest, RejectsDataOfTheWrongLength) {
  std::string p = write("short.npy", npy_bytes(1, dict_for("<f4", "(2, 3)"), raw<float>({1, 2, 3, 4, 5})));
  expect_error([&] { read_npy(p); }, p, {"truncated: expected 24 bytes of data", "found 20"});
  p = write("long.npy", npy_bytes(1, dict_for("<f4", "(2, 3)"), raw<float>({1, 2, 3, 4, 5, 6, 7})));
  expect_error([&] { read_npy(p); }, p, {"expected 24 bytes of data", "found 28"});
  p = write("long8.npy", npy_bytes(2, dict_for("<f8", "(2,)"), raw<double>({1})));
  expect_error([&] { read_npy(p); }, p, {"truncated: expected 16 bytes of data", "found 8"});
}

TEST_F(NpyTest, RejectsIntegersThatDoNotFitInt32) {
  std::string p = write("i8.npy", npy_bytes(1, dict_for("<i8", "(3,)"), raw<int64_t>({1, 2, 3000000000LL})));
  expect_error([&] { read_npy(p); }, p, {"value 3000000000", "index 2", "int64", "does not fit in int32"});
  p = write("u4.npy", npy_bytes(1, dict_for("<u4", "(1,)"), raw<uint32_t>({4000000000u})));
  expect_error([&] { read_npy(p); }, p, {"value 4000000000", "does not fit in int32"});
}

TEST_F(NpyTest, MissingFileAndDirectoryNameThePath) {
  expect_error([&] { read_npy(path("nope.npy")); }, "cannot read '" + path("nope.npy"), {"nope.npy"});
  expect_error([&] { read_npy(dir_); }, dir_, {"is a directory"});
}

// Random corruptions of a valid file: every outcome is a tensor or an attn::Error (the ASan
// build turns any out-of-bounds read into a failure).
TEST_F(NpyTest, CorruptedBytesNeverCrash) {
  const std::string good = npy_bytes(1, dict_for("<f8", "(3, 2)"), raw<double>({1, 2, 3, 4, 5, 6}));
  Rng rng(7);
  int errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng.below(4));
    for (int f = 0; f < flips; ++f) bad[rng.below(bad.size())] = static_cast<char>(rng.below(256));
    if (rng.below(4) == 0) bad.resize(rng.below(bad.size()));
    try {
      Tensor t = parse_npy(bad.data(), bad.size(), "fuzz");
      EXPECT_TRUE(t.defined());
    } catch (const Error& e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).rfind("fuzz: ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(errors, 0);
}

TEST_F(NpyTest, WriteFailureNamesThePathAndLeavesNothing) {
  const std::string p = path("missing_dir/x.npy");
  expect_error([&] { write_npy(p, Tensor::zeros({2})); }, "cannot write '" + p, {"x.npy"});
  EXPECT_TRUE(files().empty());
}

TEST_F(NpyTest, WriteNpyFilesIsAllOrNothing) {
  // The second destination cannot be written: the first must not appear either.
  std::vector<std::pair<std::string, Tensor>> outs = {
      {path("a.npy"), Tensor::full({2}, 1.f)},
      {path("missing_dir/b.npy"), Tensor::full({2}, 2.f)},
  };
  EXPECT_THROW(write_npy_files(outs), Error);
  EXPECT_TRUE(files().empty()) << files().front();

  // An existing file survives a failed group unchanged.
  write_npy(path("a.npy"), Tensor::full({2}, 7.f));
  EXPECT_THROW(write_npy_files(outs), Error);
  EXPECT_EQ(files(), std::vector<std::string>{"a.npy"});
  EXPECT_EQ(read_npy(path("a.npy")).to_vector(), (std::vector<float>{7.f, 7.f}));

  outs[1].first = path("b.npy");
  write_npy_files(outs);
  EXPECT_EQ(read_npy(path("a.npy")).to_vector(), (std::vector<float>{1.f, 1.f}));
  EXPECT_EQ(read_npy(path("b.npy")).to_vector(), (std::vector<float>{2.f, 2.f}));
  EXPECT_EQ(files().size(), 2u);

  outs[1].first = outs[0].first;
  expect_error([&] { write_npy_files(outs); }, "write_npy_files", {"given twice"});
}

}  // namespace
}  // namespace attn::io
