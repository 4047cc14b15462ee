#include "attn/io/npy.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>

#include "attn/io/atomic_file.h"

namespace attn::io {

static_assert(std::endian::native == std::endian::little,
              "npy.cpp reads and writes little-endian data by memcpy");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr int kMaxDepth = 32;  // nesting limit of the header parser (hostile input)

// ---- a Python literal, as much of it as .npy headers use ----

struct PyValue {
  enum class Kind { str, integer, floating, boolean, none, tuple, list, dict } kind = Kind::none;
  std::string text;        // str: the string; integer / floating: the source text
  int64_t integer = 0;     // integer, when it fits
  bool overflow = false;   // integer does not fit in int64
  bool boolean = false;
  std::vector<PyValue> items;     // tuple, list; dict values
  std::vector<std::string> keys;  // dict keys (string keys only)
};

// Printable excerpt of the header for error messages (one line, at most ~80 characters).
std::string excerpt(std::string_view h) {
  std::string out;
  for (unsigned char c : h) {
    if (out.size() >= 80) {
      out += "...";
      break;
    }
    if (c == '\n') out += "\\n";
    else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  // Drop trailing padding spaces (they carry no information).
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Recursive-descent parser for the literals numpy's header uses: dicts with string keys,
// strings, integers (Python 2's 'L' suffix tolerated), floats, True / False / None, tuples
// and lists. Errors throw with the byte offset of the problem.
class LiteralParser {
 public:
  LiteralParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  PyValue parse_document() {
    PyValue v = value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the dict");
    return v;
  }

 private:
  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;

  [[noreturn]] void error(const std::string& what) const {
    fail(name_, ": header is not a valid Python dict literal (", what, " at offset ", pos_,
         "): ", excerpt(s_));
  }

  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool peek(char c) {
    skip_space();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  void expect(char c) {
    if (!peek(c)) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool starts_with_word(std::string_view w) const {
    if (s_.substr(pos_, w.size()) != w) return false;
    size_t end = pos_ + w.size();
    return end == s_.size() || !(std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_');
  }

  PyValue value(int depth) {
    if (depth > kMaxDepth) error("nesting too deep");
    skip_space();
    if (pos_ >= s_.size()) error("unexpected end");
    char c = s_[pos_];
    if (c == '{') return dict(depth);
    if (c == '(') return sequence(depth, ')', PyValue::Kind::tuple);
    if (c == '[') return sequence(depth, ']', PyValue::Kind::list);
    if (c == '\'' || c == '"') return string();
    if ((c == 'u' || c == 'U' || c == 'b' || c == 'B') && pos_ + 1 < s_.size() &&
        (s_[pos_ + 1] == '\'' || s_[pos_ + 1] == '"')) {
      ++pos_;
      return string();
    }
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return number();
    PyValue v;
    if (starts_with_word("True") || starts_with_word("False")) {
      v.kind = PyValue::Kind::boolean;
      v.boolean = s_[pos_] == 'T';
      pos_ += v.boolean ? 4 : 5;
      return v;
    }
    if (starts_with_word("None")) {
      pos_ += 4;
      return v;
    }
    error("expected a value");
  }

  PyValue dict(int depth) {
    PyValue v;
    v.kind = PyValue::Kind::dict;
    expect('{');
    while (!peek('}')) {
      PyValue key = value(depth + 1);
      if (key.kind != PyValue::Kind::str) error("dict key is not a string");
      expect(':');
      PyValue item = value(depth + 1);
      v.keys.push_back(std::move(key.text));
      v.items.push_back(std::move(item));
      if (peek(',')) ++pos_;
      else if (!peek('}')) error("expected ',' or '}'");
    }
    ++pos_;
    return v;
  }

  PyValue sequence(int depth, char close, PyValue::Kind kind) {
    ++pos_;  // '(' or '['
    PyValue v;
    v.kind = kind;
    bool trailing_comma = false;
    while (!peek(close)) {
      v.items.push_back(value(depth + 1));
      trailing_comma = false;
      if (peek(',')) {
        ++pos_;
        trailing_comma = true;
      } else if (!peek(close)) {
        error(std::string("expected ',' or '") + close + "'");
      }
    }
    ++pos_;
    // "(x)" is x in parentheses, not a tuple.
    if (kind == PyValue::Kind::tuple && v.items.size() == 1 && !trailing_comma) return std::move(v.items[0]);
    return v;
  }

  PyValue string() {
    const char quote = s_[pos_++];
    PyValue v;
    v.kind = PyValue::Kind::str;
    while (true) {
      if (pos_ >= s_.size() || s_[pos_] == '\n') error("unterminated string");
      char c = s_[pos_++];
      if (c == quote) break;
      if (c == '\\') {
        if (pos_ >= s_.size()) error("unterminated string");
        char e = s_[pos_++];
        switch (e) {
          case 'n': v.text += '\n'; break;
          case 't': v.text += '\t'; break;
          case 'r': v.text += '\r'; break;
          case '0': v.text += '\0'; break;
          default: v.text += e; break;  // \\ \' \" and anything else: the character itself
        }
      } else {
        v.text += c;
      }
    }
    return v;
  }

  PyValue number() {
    size_t start = pos_;
    bool negative = false;
    if (s_[pos_] == '-' || s_[pos_] == '+') negative = s_[pos_++] == '-';
    bool is_float = false, any_digit = false;
    uint64_t mag = 0;
    bool overflow = false;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        any_digit = true;
        if (!is_float) {
          unsigned d = static_cast<unsigned>(c - '0');
          if (mag > (std::numeric_limits<uint64_t>::max() - d) / 10) overflow = true;
          else mag = mag * 10 + d;
        }
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' ||
                 ((c == '-' || c == '+') && (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E'))) {
        is_float = true;
        ++pos_;
      } else if (c == '_' && any_digit) {
        ++pos_;
      } else {
        break;
      }
    }
    if (!any_digit) error("malformed number");
    PyValue v;
    v.text = std::string(s_.substr(start, pos_ - start));
    if (is_float) {
      v.kind = PyValue::Kind::floating;
      return v;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    v.kind = PyValue::Kind::integer;
    const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
    if (overflow || mag > limit) {
      v.overflow = true;
    } else {
      v.integer = negative ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
    }
    return v;
  }
};

// ---- dtypes ----

enum class Kind { floating, signed_int, unsigned_int, boolean };

struct NpyDtype {
  Kind kind;
  size_t itemsize;
  const char* name;  // numpy's name
};

NpyDtype parse_descr(const std::string& descr, const std::string& name) {
  const char* supported = "supported: '<f4' '<f8' '<i4' '<i8' '<i2' '<u2' '<u4' '<u8' '|b1' '|u1' '|i1'";
  std::string_view d = descr;
  char order = '=';
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) {
    order = d[0];
    d.remove_prefix(1);
  }
  auto unsupported = [&]() -> NpyDtype {
    fail(name, ": unsupported dtype '", descr, "' (", supported, ")");
  };
  if (d.size() != 2) unsupported();
  const char k = d[0], n = d[1];
  NpyDtype t{};
  if (k == 'f' && n == '4') t = {Kind::floating, 4, "float32"};
  else if (k == 'f' && n == '8') t = {Kind::floating, 8, "float64"};
  else if (k == 'i' && n == '1') t = {Kind::signed_int, 1, "int8"};
  else if (k == 'i' && n == '2') t = {Kind::signed_int, 2, "int16"};
  else if (k == 'i' && n == '4') t = {Kind::signed_int, 4, "int32"};
  else if (k == 'i' && n == '8') t = {Kind::signed_int, 8, "int64"};
  else if (k == 'u' && n == '1') t = {Kind::unsigned_int, 1, "uint8"};
  else if (k == 'u' && n == '2') t = {Kind::unsigned_int, 2, "uint16"};
  else if (k == 'u' && n == '4') t = {Kind::unsigned_int, 4, "uint32"};
  else if (k == 'u' && n == '8') t = {Kind::unsigned_int, 8, "uint64"};
  else if (k == 'b' && n == '1') t = {Kind::boolean, 1, "bool"};
  else unsupported();
  if (order == '>' && t.itemsize > 1)
    fail(name, ": big-endian dtype '", descr, "' is not supported (save with arr.astype('<",
         d, "'))");
  return t;
}

template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts n integers of type T at p to int32 with a range check.
template <typename T>
void ints_to_i32(const unsigned char* p, int64_t n, int32_t* out, const std::string& name,
                 const char* type_name) {
  for (int64_t i = 0; i < n; ++i) {
    T x = load<T>(p + i * static_cast<int64_t>(sizeof(T)));
    if constexpr (std::is_signed_v<T>) {
      if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
        fail(name, ": value ", static_cast<long long>(x), " at flat index ", i, " of ", type_name,
             " data does not fit in int32");
    } else {
      if (x > static_cast<T>(std::numeric_limits<int32_t>::max()))
        fail(name, ": value ", static_cast<unsigned long long>(x), " at flat index ", i, " of ",
             type_name, " data does not fit in int32");
    }
    out[i] = static_cast<int32_t>(x);
  }
}

std::string shape_tuple(const Shape& s) {
  // Python's tuple syntax: "()", "(3,)", "(2, 3)".
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

const PyValue* find_key(const PyValue& dict, const char* key) {
  for (size_t i = 0; i < dict.keys.size(); ++i)
    if (dict.keys[i] == key) return &dict.items[i];
  return nullptr;
}

std::string dir_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(1, '.') : parent.string();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

Tensor parse_npy(const void* data, size_t size, const std::string& name, NpyInfo* info) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (size < kMagicLen || std::memcmp(bytes, kMagic, kMagicLen) != 0) {
    if (size < kMagicLen && (size == 0 || std::memcmp(bytes, kMagic, size) == 0))
      fail(name, ": not a .npy file (only ", size, " bytes, too short for the \\x93NUMPY magic)");
    fail(name, ": not a .npy file (bad magic: it does not start with \\x93NUMPY)");
  }
  if (size < kMagicLen + 2) fail(name, ": truncated .npy preamble (", size, " bytes, no version)");
  const int major = bytes[6], minor = bytes[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    fail(name, ": unsupported .npy format version ", major, ".", minor,
         " (supported: 1.0, 2.0, 3.0)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t preamble = kMagicLen + 2 + len_bytes;
  if (size < preamble)
    fail(name, ": truncated .npy preamble (", size, " bytes; version ", major, ".0 needs ",
         preamble, ")");
  size_t header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8);
  if (len_bytes == 4)
    header_len |= (static_cast<size_t>(bytes[10]) << 16) | (static_cast<size_t>(bytes[11]) << 24);
  if (header_len > size - preamble)
    fail(name, ": header says ", header_len, " bytes but the file has ", size - preamble,
         " bytes after the ", preamble, "-byte preamble");

  // Versions 1.0 and 2.0 are latin-1, 3.0 is UTF-8; the dict itself is ASCII in both, and
  // non-ASCII bytes can only sit inside strings, where the parser keeps them as bytes.
  std::string_view header(reinterpret_cast<const char*>(bytes + preamble), header_len);
  PyValue dict = LiteralParser(header, name).parse_document();
  if (dict.kind != PyValue::Kind::dict)
    fail(name, ": header is not a Python dict literal: ", excerpt(header));
  for (const char* key : {"descr", "fortran_order", "shape"})
    if (!find_key(dict, key))
      fail(name, ": header has no '", key, "' key (needs 'descr', 'fortran_order', 'shape'): ",
           excerpt(header));

  const PyValue& descr = *find_key(dict, "descr");
  if (descr.kind != PyValue::Kind::str)
    fail(name, ": unsupported dtype (structured or non-string 'descr'; ",
         "only plain numeric arrays are read): ", excerpt(header));
  const NpyDtype dt = parse_descr(descr.text, name);

  const PyValue& fortran = *find_key(dict, "fortran_order");
  if (fortran.kind != PyValue::Kind::boolean)
    fail(name, ": 'fortran_order' must be True or False: ", excerpt(header));
  if (fortran.boolean)
    fail(name, ": fortran_order is True; only C order is supported (save np.ascontiguousarray(a))");

  const PyValue& shape_v = *find_key(dict, "shape");
  if (shape_v.kind != PyValue::Kind::tuple && shape_v.kind != PyValue::Kind::list)
    fail(name, ": 'shape' must be a tuple of integers: ", excerpt(header));
  Shape shape;
  uint64_t numel = 1;
  bool too_large = false;
  for (const PyValue& d : shape_v.items) {
    if (d.kind != PyValue::Kind::integer)
      fail(name, ": 'shape' must be a tuple of integers, found '", d.text, "': ", excerpt(header));
    if (d.overflow)
      fail(name, ": dimension ", d.text, " in 'shape' overflows int64: ", excerpt(header));
    if (d.integer < 0)
      fail(name, ": negative dimension ", d.integer, " in 'shape': ", excerpt(header));
    shape.push_back(d.integer);
  }
  for (int64_t d : shape) {
    if (d == 0) {
      numel = 0;
      too_large = false;
      break;
    }
    if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dt.itemsize /
                    static_cast<uint64_t>(d))
      too_large = true;
    else
      numel *= static_cast<uint64_t>(d);
  }
  if (too_large)
    fail(name, ": shape ", shape_tuple(shape), " is too large (its byte count overflows)");

  const uint64_t expected = numel * dt.itemsize;
  const uint64_t found = size - preamble - header_len;
  if (found < expected)
    fail(name, ": truncated: expected ", expected, " bytes of data for shape ", shape_tuple(shape),
         " ", dt.name, ", found ", found);
  if (found > expected)
    fail(name, ": too long: expected ", expected, " bytes of data for shape ", shape_tuple(shape),
         " ", dt.name, ", found ", found, " (extra bytes after the array)");

  const unsigned char* p = bytes + preamble + header_len;
  const int64_t n = static_cast<int64_t>(numel);
  Tensor t;
  std::string conversion;
  if (dt.kind == Kind::floating) {
    t = Tensor::empty(shape, DType::f32);
    float* out = n ? t.data<float>() : nullptr;
    if (dt.itemsize == 4) {
      if (n) std::memcpy(out, p, static_cast<size_t>(expected));
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<double>(p + 8 * i));
      conversion = "float64 to float32";
    }
  } else {
    t = Tensor::empty(shape, DType::i32);
    int32_t* out = n ? t.data<int32_t>() : nullptr;
    if (dt.kind == Kind::boolean) {
      for (int64_t i = 0; i < n; ++i) out[i] = p[i] != 0;
    } else if (dt.kind == Kind::signed_int) {
      switch (dt.itemsize) {
        case 1: ints_to_i32<int8_t>(p, n, out, name, dt.name); break;
        case 2: ints_to_i32<int16_t>(p, n, out, name, dt.name); break;
        case 4: if (n) std::memcpy(out, p, static_cast<size_t>(expected)); break;
        default: ints_to_i32<int64_t>(p, n, out, name, dt.name); break;
      }
    } else {
      switch (dt.itemsize) {
        case 1: ints_to_i32<uint8_t>(p, n, out, name, dt.name); break;
        case 2: ints_to_i32<uint16_t>(p, n, out, name, dt.name); break;
        case 4: ints_to_i32<uint32_t>(p, n, out, name, dt.name); break;
        default: ints_to_i32<uint64_t>(p, n, out, name, dt.name); break;
      }
    }
    if (!(dt.kind == Kind::signed_int && dt.itemsize == 4))
      conversion = std::string(dt.name) + " to int32";
  }
  if (info) {
    info->major_version = major;
    info->minor_version = minor;
    info->descr = descr.text;
    info->dtype_name = dt.name;
    info->shape = shape;
    info->conversion = conversion;
  }
  return t;
}

Tensor read_npy(const std::string& path, NpyInfo* info) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail(path, ": is a directory, not a .npy file");
  const std::string content = read_file(path);
  return parse_npy(content.data(), content.size(), path, info);
}

void encode_npy(const Tensor& t, const std::function<void(const void*, size_t)>& append) {
  ATTN_CHECK(t.defined(), "encode_npy: tensor is undefined");
  // bf16 has no numpy dtype: widen to f32 (exact). f64 (double-precision checks) stays f64.
  const Tensor c = t.dtype() == DType::bf16 ? t.to(DType::f32) : t.contiguous();
  const char* descr = "<f4";
  switch (c.dtype()) {
    case DType::f32: case DType::bf16: descr = "<f4"; break;
    case DType::i32: descr = "<i4"; break;
    case DType::f64: descr = "<f8"; break;
  }
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                     shape_tuple(c.shape()) + ", }";
  // Pad with spaces so that preamble + header is a multiple of 64 (numpy's ARRAY_ALIGN) and
  // ends with '\n'. Version 1.0 stores the header length in 16 bits; longer needs 2.0.
  auto padded = [&](size_t preamble) {
    size_t total = preamble + dict.size() + 1;
    return dict + std::string((64 - total % 64) % 64, ' ') + "\n";
  };
  std::string header = padded(10);
  int major = 1;
  if (header.size() > 0xffff) {
    header = padded(12);
    major = 2;
  }
  std::string pre(kMagic, kMagicLen);
  pre += static_cast<char>(major);
  pre += '\0';
  const size_t hl = header.size();
  pre += static_cast<char>(hl & 0xff);
  pre += static_cast<char>((hl >> 8) & 0xff);
  if (major == 2) {
    pre += static_cast<char>((hl >> 16) & 0xff);
    pre += static_cast<char>((hl >> 24) & 0xff);
  }
  append(pre.data(), pre.size());
  append(header.data(), header.size());
  if (c.numel() > 0) append(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
}

void write_npy(const std::string& path, const Tensor& t) {
  ATTN_CHECK(t.defined(), "write_npy: tensor for '", path, "' is undefined");
  write_file_atomic_stream(path, [&](const auto& append) { encode_npy(t, append); });
}

void write_npy_files(const std::vector<std::pair<std::string, Tensor>>& files) {
  std::set<std::string> seen;
  for (const auto& [path, t] : files) {
    ATTN_CHECK(t.defined(), "write_npy_files: tensor for '", path, "' is undefined");
    ATTN_CHECK(seen.insert(path).second, "write_npy_files: '", path, "' is given twice");
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      fail("cannot write '", path, "': it is a directory");
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
      fail("cannot write '", path, "': directory '", parent.string(), "' does not exist");
  }
  // Phase 1: every file complete under a temporary name (itself written atomically).
  const std::string suffix = ".tmp." + std::to_string(::getpid()) + ".staged";
  std::vector<std::string> staged;
  try {
    for (const auto& [path, t] : files) {
      staged.push_back(path + suffix);
      write_npy(staged.back(), t);
    }
  } catch (const Error& e) {
    for (const auto& s : staged) ::unlink(s.c_str());
    // Name the destination, not the temporary.
    std::string msg = e.what();
    const std::string& tmp = staged.back();
    for (size_t at; (at = msg.find(tmp)) != std::string::npos;)
      msg.replace(at, tmp.size(), files[staged.size() - 1].first);
    throw Error(msg);
  } catch (...) {
    for (const auto& s : staged) ::unlink(s.c_str());
    throw;
  }
  // Phase 2: rename into place (same directory, so each rename is atomic and cheap), then
  // make the renames durable with one fsync per directory.
  std::set<std::string> dirs;
  for (size_t i = 0; i < files.size(); ++i) {
    if (::rename(staged[i].c_str(), files[i].first.c_str()) != 0) {
      const int err = errno;
      for (size_t j = i; j < staged.size(); ++j) ::unlink(staged[j].c_str());
      fail("cannot write '", files[i].first, "': rename failed: ", std::strerror(err));
    }
    dirs.insert(dir_of(files[i].first));
  }
  for (const auto& d : dirs) fsync_dir(d);
}

}  // namespace attn::io
