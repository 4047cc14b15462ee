#include "attn/io/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "attn/core/rng.h"
#include "attn/io/atomic_file.h"
#include "common/fixtures.h"

namespace attn::io {
namespace {

// Substring check that prints the whole message on failure.
::testing::AssertionResult has(const std::string& msg, const std::string& sub) {
  if (msg.find(sub) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << sub << "' not found in: '" << msg << "'";
}

std::string temp_dir() {
  auto d = std::filesystem::temp_directory_path() / ("attn_st_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}

// Raw file bytes from a header text and a buffer of `buffer_bytes` bytes (values 0..255).
std::string make_file(const std::string& header, size_t buffer_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  for (size_t i = 0; i < buffer_bytes; ++i) out.push_back(static_cast<char>(i));
  return out;
}

// The attn::Error message from parsing `bytes`, or "" when it parses.
std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.raw_data(), bc.raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())) == 0;
}

TEST(Safetensors, RoundTripAllDtypesBitExact) {
  Tensor f = Tensor::from_vector({1.5f, -2.f, 3.25f, 1e-30f, -0.f, 7.f}, {2, 3});
  Tensor ft = f.transpose(0, 1);  // non-contiguous: written in row-major order of the view
  Tensor h = f.to(DType::bf16);
  Tensor i = Tensor::from_vector_i32({-7, 0, 2147483647, -2147483647 - 1}, {4});
  Tensor scalar = Tensor::full({}, 4.5f);
  Tensor empty = Tensor::zeros({0, 3});
  TensorList in = {{"z.f32", f}, {"a.transposed", ft}, {"m.bf16", h}, {"i32", i}, {"scalar", scalar}, {"empty", empty}};
  StringMap meta = {{"note", "caf\xc3\xa9"}, {"json", "{\"k\": [1, 2]}"}};

  std::string bytes = serialize_safetensors(in, meta);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header must be padded so the buffer is 8-byte aligned";
  // Names sorted in the buffer: offsets increase with the name.
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  uint64_t prev_end = 0;
  for (const char* name : {"a.transposed", "empty", "i32", "m.bf16", "scalar", "z.f32"}) {
    EXPECT_EQ(header[name]["data_offsets"][0].get<uint64_t>(), prev_end) << name;
    prev_end = header[name]["data_offsets"][1].get<uint64_t>();
  }
  EXPECT_EQ(header["m.bf16"]["dtype"], "BF16");

  Safetensors st = parse_safetensors(bytes.data(), bytes.size());
  ASSERT_EQ(st.tensors.size(), in.size());
  EXPECT_TRUE(same_bits(st.at("z.f32"), f));
  EXPECT_TRUE(same_bits(st.at("a.transposed"), ft.contiguous()));
  EXPECT_EQ(st.at("a.transposed").shape(), (Shape{3, 2}));
  EXPECT_TRUE(same_bits(st.at("m.bf16"), h));
  EXPECT_TRUE(same_bits(st.at("i32"), i));
  EXPECT_EQ(st.at("scalar").shape(), Shape{});
  EXPECT_EQ(st.at("scalar").to_vector(), std::vector<float>{4.5f});
  EXPECT_EQ(st.at("empty").shape(), (Shape{0, 3}));
  EXPECT_EQ(st.metadata, meta);
  EXPECT_EQ(st.names_with_prefix("a."), std::vector<std::string>{"a.transposed"});
}

TEST(Safetensors, WriteThenReadFile) {
  const std::string path = temp_dir() + "/rt.safetensors";
  std::map<std::string, Tensor> in = {{"w", Tensor::from_vector({1, 2, 3, 4}, {2, 2})}};
  write_safetensors(path, TensorList(in.begin(), in.end()), {{"k", "v"}});
  Safetensors st = read_safetensors(path);
  EXPECT_EQ(st.source, path);
  EXPECT_TRUE(same_bits(st.at("w"), in["w"]));
  EXPECT_EQ(st.meta("k"), "v");
  // Missing names are reported with the file and what it does hold.
  try {
    st.at("nope");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), path));
    EXPECT_TRUE(has(e.what(), "'nope'"));
    EXPECT_TRUE(has(e.what(), "w"));
  }
  EXPECT_THROW(st.meta("missing"), Error);
}

TEST(Safetensors, WriterRejectsBadNames) {
  Tensor t = Tensor::zeros({1});
  EXPECT_THROW(serialize_safetensors({{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(serialize_safetensors({{"", t}}), Error);
  EXPECT_THROW(serialize_safetensors({{"__metadata__", t}}), Error);
  EXPECT_THROW(serialize_safetensors({{"x", Tensor()}}), Error);
  EXPECT_THROW(serialize_safetensors({{"bad\xff", t}}), Error);
}

// One test per malformed-file case, each checking that the message names the problem and,
// where one is involved, the tensor.
TEST(SafetensorsMalformed, ShorterThanLengthField) {
  std::string msg = parse_error(std::string(5, '\0'));
  EXPECT_TRUE(has(msg, "bad.safetensors"));
  EXPECT_TRUE(has(msg, "shorter than the 8-byte header length"));
  EXPECT_TRUE(has(parse_error(""), "is 0 bytes"));
}

TEST(SafetensorsMalformed, HeaderLengthBeyondFile) {
  std::string f = make_file("{}", 0);
  uint64_t n = 1000;
  std::memcpy(f.data(), &n, 8);
  EXPECT_TRUE(has(parse_error(f), "header length 1000 exceeds the 2 bytes"));
  n = ~uint64_t{0};  // must not overflow the bounds check
  std::memcpy(f.data(), &n, 8);
  EXPECT_TRUE(has(parse_error(f), "exceeds"));
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  EXPECT_TRUE(has(parse_error(make_file("{\"a\": ", 0)), "header is not valid JSON"));
  EXPECT_TRUE(has(parse_error(make_file("[1, 2]", 0)), "not a JSON object"));
  EXPECT_TRUE(has(parse_error(make_file("", 0)), "not a JSON object"));
  EXPECT_TRUE(has(parse_error(make_file("{} trailing", 0)), "not valid JSON"));
}

TEST(SafetensorsMalformed, UnknownDtype) {
  std::string msg = parse_error(make_file(R"({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", 8));
  EXPECT_TRUE(has(msg, "tensor 'w'"));
  EXPECT_TRUE(has(msg, "unknown dtype 'F33'"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", 2)), "not supported"));
}

TEST(SafetensorsMalformed, ShapeOffsetMismatch) {
  std::string msg =
      parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 20));
  EXPECT_TRUE(has(msg, "tensor 'w'"));
  EXPECT_TRUE(has(msg, "span 20 bytes but F32 [2, 3] needs 24"));
}

TEST(SafetensorsMalformed, BadFieldTypes) {
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8)), "non-negative integer"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8)), "data_offsets must be an array [begin, end]"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [2]}})", 8)), "lacks 'data_offsets'"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8)), "begin after end"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"w": [1]})", 0)), "tensor 'w': header entry must be an object"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})", 0)),
                  "empty name"));
  EXPECT_TRUE(has(parse_error(make_file(R"({"__metadata__": {"k": 1}})", 0)), "must be a string"));
  EXPECT_TRUE(has(parse_error(make_file(
                  R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}})", 8)), "too large"));
  // numel * 8 would wrap around 2^64 to 0 without the cap: must not pass as an empty tensor.
  EXPECT_TRUE(has(parse_error(make_file(
                      R"({"w": {"dtype": "F64", "shape": [2305843009213693952, 1], "data_offsets": [0, 0]}})", 0)),
                  "too large"));
  EXPECT_TRUE(has(parse_error(make_file(
                      R"({"w": {"dtype": "F64", "shape": [65536, 65536, 65536, 65536], "data_offsets": [0, 0]}})", 0)),
                  "too large"));
}

TEST(SafetensorsMalformed, OffsetsOutOfRange) {
  std::string msg = parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}})", 16));
  EXPECT_TRUE(has(msg, "tensor 'w'"));
  EXPECT_TRUE(has(msg, "beyond the 16-byte data buffer"));
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  std::string msg = parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                                          24));
  EXPECT_TRUE(has(msg, "tensor 'b'"));
  EXPECT_TRUE(has(msg, "overlap tensor 'a'"));
}

TEST(SafetensorsMalformed, GapBetweenTensors) {
  std::string msg = parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})",
                                          24));
  EXPECT_TRUE(has(msg, "tensor 'b'"));
  EXPECT_TRUE(has(msg, "without gaps"));
  // A buffer that does not start at offset 0 is a gap too.
  EXPECT_TRUE(has(parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)), "begin at 4"));
}

TEST(SafetensorsMalformed, DuplicateNames) {
  std::string msg = parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                              "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                          8));
  EXPECT_TRUE(has(msg, "tensor 'a'"));
  EXPECT_TRUE(has(msg, "appears twice"));
}

TEST(SafetensorsMalformed, TrailingGarbage) {
  Tensor t = Tensor::from_vector({1, 2}, {2});
  std::string good = serialize_safetensors({{"t", t}});
  EXPECT_EQ(parse_error(good), "");
  std::string msg = parse_error(good + "junk");
  EXPECT_TRUE(has(msg, "trailing garbage"));
  EXPECT_TRUE(has(msg, "12 bytes but the tensors cover only 8"));
}

TEST(SafetensorsMalformed, TruncatedFileNamesPathAndTensor) {
  const std::string path = temp_dir() + "/trunc.safetensors";
  std::string good = serialize_safetensors({{"a", Tensor::zeros({4})}, {"b", Tensor::zeros({4})}});
  write_file_atomic(path, good.substr(0, good.size() - 3));
  try {
    read_safetensors(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), path));
    EXPECT_TRUE(has(e.what(), "tensor 'b'"));
    EXPECT_TRUE(has(e.what(), "truncated"));
  }
  EXPECT_THROW(read_safetensors(temp_dir() + "/does_not_exist.safetensors"), Error);
}

TEST(SafetensorsMalformed, ConversionRangeChecks) {
  std::string f = make_file(R"({"big": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 0);
  int64_t v = int64_t{1} << 40;
  f.append(reinterpret_cast<const char*>(&v), 8);
  std::string msg = parse_error(f);
  EXPECT_TRUE(has(msg, "tensor 'big'"));
  EXPECT_TRUE(has(msg, "does not fit in i32"));

  std::string g = make_file(R"({"huge": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 0);
  double d = 1e300;
  g.append(reinterpret_cast<const char*>(&d), 8);
  EXPECT_TRUE(has(parse_error(g), "outside the f32 range"));

  std::string b = make_file(R"({"flag": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}})", 0) + "\x02";
  EXPECT_TRUE(has(parse_error(b), "neither 0 nor 1"));
}

// Random corruptions of a valid file (byte flips, truncations, header-length edits) either
// parse or throw attn::Error — never crash or leak another exception type (run under ASan in
// CI; the libFuzzer target calls the same function).
TEST(SafetensorsMalformed, RandomCorruptionsThrowOnlyAttnError) {
  const std::string good = serialize_safetensors(
      {{"a", Tensor::from_vector({1, 2, 3}, {3})}, {"b", Tensor::from_vector_i32({4, 5}, {2, 1})},
       {"c", Tensor::zeros({2}).to(DType::bf16)}},
      {{"k", "v"}});
  Rng rng(42);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string f = good;
    const int kind = static_cast<int>(rng.below(3));
    if (kind == 0) {
      for (uint64_t k = 0, n = 1 + rng.below(4); k < n; ++k)
        f[rng.below(f.size())] = static_cast<char>(rng.below(256));
    } else if (kind == 1) {
      f.resize(rng.below(f.size()));
    } else {
      uint64_t n;
      std::memcpy(&n, f.data(), 8);
      n += rng.below(17) - 8;
      std::memcpy(f.data(), &n, 8);
    }
    try {
      parse_safetensors(f.data(), f.size());
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(parsed, 0);  // flips inside tensor data are valid files
}

// Written by tools/make_fixtures.py (Python + numpy): cross-tool compatibility of the format
// and of every converted dtype. Values: base = arange(6).reshape(2, 3) - 3.
TEST(Safetensors, ReadsFileWrittenByPythonScript) {
  Safetensors st = testing::load_fixture("safetensors_dtypes");
  std::vector<float> base = {-3, -2, -1, 0, 1, 2};
  auto scaled = [&](float s, float off) {
    std::vector<float> v;
    for (float b : base) v.push_back(b * s + off);
    return v;
  };
  for (const char* name : {"f64", "f32", "f16", "bf16"}) {
    const Tensor& t = st.at(name);
    ASSERT_EQ(t.shape(), (Shape{2, 3})) << name;
    EXPECT_EQ(t.dtype(), std::string(name) == "bf16" ? DType::bf16 : DType::f32) << name;
    EXPECT_EQ(t.to_vector(), scaled(0.5f, 0)) << name;
  }
  for (const char* name : {"i32", "i16", "i8"}) {
    ASSERT_EQ(st.at(name).shape(), (Shape{2, 3})) << name;
    EXPECT_EQ(st.at(name).dtype(), DType::i32) << name;
    EXPECT_EQ(st.at(name).to_vector(), base) << name;
  }
  EXPECT_EQ(st.at("i64").to_vector(), scaled(1e6f, 0));
  EXPECT_EQ(st.at("u8").to_vector(), scaled(1, 3));
  EXPECT_EQ(st.at("bool").to_vector(), (std::vector<float>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(st.at("scalar").shape(), Shape{});
  EXPECT_EQ(st.at("scalar").to_vector(), std::vector<float>{2.5f});
  EXPECT_EQ(st.at("empty").shape(), (Shape{0, 3}));
  EXPECT_EQ(st.meta("script"), "tools/make_fixtures.py");
  EXPECT_TRUE(has(st.meta("notes"), "unicode check: \xc3\xa9"));
  EXPECT_EQ(st.tensors.size(), 12u);
}

// Every committed fixture parses (the module tests of other layers rely on them).
TEST(Safetensors, AllFixturesParse) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ATTN_SOURCE_DIR) + "/tests/fixtures")) {
    if (entry.path().extension() != ".safetensors") continue;
    Safetensors st = read_safetensors(entry.path().string());
    EXPECT_FALSE(st.tensors.empty()) << entry.path();
    EXPECT_EQ(st.meta("script"), "tools/make_fixtures.py") << entry.path();
    ++n;
  }
  EXPECT_GE(n, 20);
}

// A write that fails part-way (the file-size limit makes write() fail with EFBIG, as a full
// disk would with ENOSPC) leaves the previous file intact and no temporary behind.
TEST(Safetensors, FailedWriteKeepsPreviousFile) {
  const std::string dir = temp_dir() + "/full";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/w.safetensors";
  Tensor small = Tensor::from_vector({1, 2, 3}, {3});
  write_safetensors(path, {{"w", small}});
  const std::string before = read_file(path);

  Tensor big = Tensor::full({100000}, 1.f);
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old_limit;
  lim.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    write_safetensors(path, {{"w", big}});
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_TRUE(has(msg, path));
  EXPECT_TRUE(has(msg, "previous file is untouched"));
  EXPECT_EQ(read_file(path), before);
  EXPECT_TRUE(same_bits(read_safetensors(path).at("w"), small));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1) << "the temporary file must be removed";

  // A directory that does not exist: a clear error, nothing created.
  EXPECT_THROW(write_safetensors(dir + "/no/such/dir/x.safetensors", {{"w", small}}), Error);
}

}  // namespace
}  // namespace attn::io
