#include "attn/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/core/error.h"
#include "attn/io/atomic_file.h"

namespace attn::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O copies little-endian bytes directly; big-endian hosts need byte swaps");

namespace {

using nlohmann::json;

// The spec caps the header at 100 MB so that a corrupt length cannot ask for a huge buffer.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

enum class Kind { f32, bf16, i32, f64, f16, sint, uint, boolean };

struct FileDType {
  const char* name;
  size_t size;
  Kind kind;
};

constexpr FileDType kFileDTypes[] = {
    {"F32", 4, Kind::f32},  {"BF16", 2, Kind::bf16}, {"I32", 4, Kind::i32},
    {"F64", 8, Kind::f64},  {"F16", 2, Kind::f16},   {"I64", 8, Kind::sint},
    {"I16", 2, Kind::sint}, {"I8", 1, Kind::sint},   {"U8", 1, Kind::uint},
    {"U16", 2, Kind::uint}, {"U32", 4, Kind::uint},  {"U64", 8, Kind::uint},
    {"BOOL", 1, Kind::boolean},
};

const FileDType* find_file_dtype(const std::string& s) {
  for (const auto& d : kFileDTypes)
    if (s == d.name) return &d;
  return nullptr;
}

const char* file_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::f64: return "F64";  // f64 exists for gradient checks (autograd)
  }
  return "?";
}

std::string where(const std::string& source) { return "safetensors '" + source + "': "; }

// IEEE half -> float (handles subnormals, Inf, NaN).
float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      float v = static_cast<float>(mant) * 0x1p-24f;
      return sign ? -v : v;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T load_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts `n` elements of file dtype `fd` at `src` into `dst` (f32 / bf16 / i32 storage).
void convert(const FileDType& fd, const unsigned char* src, int64_t n, Tensor& dst,
             const std::string& source, const std::string& name) {
  const size_t sz = fd.size;
  auto int_out_of_range = [&](auto v) {
    fail(where(source), "tensor '", name, "': ", fd.name, " value ", v,
         " does not fit in i32 (the library's integer type)");
  };
  switch (fd.kind) {
    case Kind::f32:
    case Kind::bf16:
    case Kind::i32:
      if (n > 0) std::memcpy(dst.raw_data(), src, static_cast<size_t>(n) * sz);
      return;
    case Kind::f64: {
      float* out = dst.data<float>();
      for (int64_t i = 0; i < n; ++i) {
        double v = load_le<double>(src + i * sz);
        if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
          fail(where(source), "tensor '", name, "': F64 value ", v, " at element ", i,
               " is outside the f32 range");
        out[i] = static_cast<float>(v);
      }
      return;
    }
    case Kind::f16: {
      float* out = dst.data<float>();
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_le<uint16_t>(src + i * sz));
      return;
    }
    case Kind::sint: {
      int32_t* out = dst.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) {
        int64_t v = sz == 8 ? load_le<int64_t>(src + i * sz)
                  : sz == 2 ? load_le<int16_t>(src + i * sz)
                            : static_cast<int8_t>(src[i]);
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
          int_out_of_range(v);
        out[i] = static_cast<int32_t>(v);
      }
      return;
    }
    case Kind::uint: {
      int32_t* out = dst.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) {
        uint64_t v = sz == 8 ? load_le<uint64_t>(src + i * sz)
                   : sz == 4 ? load_le<uint32_t>(src + i * sz)
                   : sz == 2 ? load_le<uint16_t>(src + i * sz)
                             : src[i];
        if (v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) int_out_of_range(v);
        out[i] = static_cast<int32_t>(v);
      }
      return;
    }
    case Kind::boolean: {
      int32_t* out = dst.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) {
        if (src[i] > 1)
          fail(where(source), "tensor '", name, "': BOOL byte ", int(src[i]), " at element ", i,
               " is neither 0 nor 1");
        out[i] = src[i];
      }
      return;
    }
  }
}

DType library_dtype(Kind k) {
  switch (k) {
    case Kind::f32:
    case Kind::f64:
    case Kind::f16: return DType::f32;
    case Kind::bf16: return DType::bf16;
    default: return DType::i32;
  }
}

bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

struct Entry {
  std::string name;
  const FileDType* dtype;
  Shape shape;
  uint64_t begin, end;
};

// A non-negative JSON integer, or an error naming what it is.
uint64_t as_u64(const json& v, const std::string& ctx) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  fail(ctx, " must be a non-negative integer, got ", v.dump());
}

Entry parse_entry(const std::string& source, const std::string& name, const json& e) {
  const std::string ctx = where(source) + "tensor '" + name + "'";
  if (!e.is_object()) fail(ctx, ": header entry must be an object, got ", e.dump());
  for (auto it = e.begin(); it != e.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      fail(ctx, ": unexpected header field '", it.key(), "' (expected dtype, shape, data_offsets)");
  for (const char* f : {"dtype", "shape", "data_offsets"})
    if (!e.contains(f)) fail(ctx, ": header entry lacks '", f, "'");

  Entry out;
  out.name = name;
  const json& dt = e["dtype"];
  if (!dt.is_string()) fail(ctx, ": dtype must be a string, got ", dt.dump());
  out.dtype = find_file_dtype(dt.get<std::string>());
  if (!out.dtype) {
    const std::string s = dt.get<std::string>();
    if (s.rfind("F8_", 0) == 0)
      fail(ctx, ": dtype ", s, " is not supported (supported: F32 BF16 I32 F64 F16 I64 I16 I8 U8 U16 U32 U64 BOOL)");
    fail(ctx, ": unknown dtype '", s, "' (supported: F32 BF16 I32 F64 F16 I64 I16 I8 U8 U16 U32 U64 BOOL)");
  }

  const json& sh = e["shape"];
  if (!sh.is_array()) fail(ctx, ": shape must be an array, got ", sh.dump());
  // numel * dtype size is compared with the offsets below; cap numel at 2^56 so that the
  // product cannot overflow (no real tensor comes near 2^56 elements).
  constexpr uint64_t kMaxNumel = uint64_t{1} << 56;
  uint64_t numel = 1;
  bool huge = false;
  for (const json& d : sh) {
    uint64_t v = as_u64(d, ctx + ": shape entry");
    if (v > kMaxNumel) fail(ctx, ": shape entry ", v, " is too large");
    out.shape.push_back(static_cast<int64_t>(v));
    if (v != 0 && numel > kMaxNumel / v) huge = true;
    else numel *= v;
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    fail(ctx, ": data_offsets must be an array [begin, end], got ", off.dump());
  out.begin = as_u64(off[0], ctx + ": data_offsets begin");
  out.end = as_u64(off[1], ctx + ": data_offsets end");
  if (out.begin > out.end)
    fail(ctx, ": data_offsets [", out.begin, ", ", out.end, "] has begin after end");
  bool has_zero = std::find(out.shape.begin(), out.shape.end(), int64_t{0}) != out.shape.end();
  if (huge && !has_zero) fail(ctx, ": shape ", shape_str(out.shape), " is too large");
  if (has_zero) numel = 0;
  const uint64_t need = numel * out.dtype->size;
  if (out.end - out.begin != need)
    fail(ctx, ": data_offsets [", out.begin, ", ", out.end, "] span ", out.end - out.begin,
         " bytes but ", out.dtype->name, " ", shape_str(out.shape), " needs ", need,
         " (shape and offsets disagree)");
  return out;
}

// Parses the header JSON, rejecting duplicate keys (nlohmann keeps the last one silently).
json parse_header_json(const char* p, size_t n, const std::string& source) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    else if (ev == json::parse_event_t::object_end) keys.pop_back();
    else if (ev == json::parse_event_t::key && !keys.empty()) {
      const std::string k = parsed.get<std::string>();
      if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json h;
  try {
    h = json::parse(p, p + n, cb);
  } catch (const json::exception& e) {
    fail(where(source), "header is not valid JSON: ", e.what());
  }
  if (!duplicate.empty()) fail(where(source), "tensor '", duplicate, "': name appears twice in the header");
  return h;
}

StringMap parse_metadata(const json& m, const std::string& source) {
  if (!m.is_object()) fail(where(source), "__metadata__ must be an object of strings");
  StringMap out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_string())
      fail(where(source), "__metadata__ value for '", it.key(), "' must be a string, got ", it.value().dump());
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

}  // namespace

const Tensor& Safetensors::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  std::string some;
  int k = 0;
  for (const auto& [n, t] : tensors) {
    if (k++ == 8) {
      some += ", ...";
      break;
    }
    some += (k > 1 ? ", " : "") + n;
  }
  fail(where(source), "no tensor '", name, "' (the file holds ", tensors.size(), " tensors: ", some, ")");
}

const std::string& Safetensors::meta(const std::string& key) const {
  auto it = metadata.find(key);
  if (it == metadata.end()) fail(where(source), "no metadata key '", key, "'");
  return it->second;
}

std::vector<std::string> Safetensors::names_with_prefix(const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
    out.push_back(it->first);
  return out;
}

namespace {

struct Plan {
  std::string header;  // length field + padded JSON
  std::vector<std::pair<std::string, Tensor>> sorted;  // contiguous tensors in file order
};

Plan plan_file(const TensorList& tensors, const StringMap& metadata) {
  Plan plan;
  plan.sorted.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    ATTN_CHECK(!name.empty(), "write_safetensors: empty tensor name");
    ATTN_CHECK(name != "__metadata__", "write_safetensors: '__metadata__' is reserved and cannot name a tensor");
    ATTN_CHECK(t.defined(), "write_safetensors: tensor '", name, "' is undefined");
    ATTN_CHECK(valid_utf8(name), "write_safetensors: tensor name is not valid UTF-8");
    plan.sorted.emplace_back(name, t.contiguous());
  }
  std::sort(plan.sorted.begin(), plan.sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < plan.sorted.size(); ++i)
    ATTN_CHECK(plan.sorted[i].first != plan.sorted[i - 1].first, "write_safetensors: tensor '",
               plan.sorted[i].first, "' is given twice");

  json h = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : plan.sorted) {
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    h[name] = {{"dtype", file_dtype_name(t.dtype())},
               {"shape", t.shape()},
               {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const json::exception& e) {
    fail("write_safetensors: metadata is not valid UTF-8: ", e.what());
  }
  // Pad with spaces (allowed by the spec) so that the buffer starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  plan.header.resize(8);
  std::memcpy(plan.header.data(), &n, 8);
  plan.header += text;
  return plan;
}

}  // namespace

std::string serialize_safetensors(const TensorList& tensors, const StringMap& metadata) {
  Plan plan = plan_file(tensors, metadata);
  std::string out = std::move(plan.header);
  for (const auto& [name, t] : plan.sorted)
    out.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  return out;
}

void write_safetensors(const std::string& path, const TensorList& tensors, const StringMap& metadata) {
  Plan plan = plan_file(tensors, metadata);
  write_file_atomic_stream(path, [&](const auto& append) {
    append(plan.header.data(), plan.header.size());
    for (const auto& [name, t] : plan.sorted)
      if (t.numel() > 0) append(t.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  });
}

Safetensors parse_safetensors(const void* data, size_t bytes, const std::string& source) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (bytes < 8)
    fail(where(source), "file is ", bytes, " bytes, shorter than the 8-byte header length (truncated?)");
  const uint64_t n = load_le<uint64_t>(p);
  if (n > bytes - 8)
    fail(where(source), "header length ", n, " exceeds the ", bytes - 8,
         " bytes after the length field (truncated or not a safetensors file)");
  if (n > kMaxHeaderBytes) fail(where(source), "header length ", n, " exceeds the format's 100 MB limit");
  if (n == 0 || p[8] != '{') fail(where(source), "header is not a JSON object (must start with '{')");

  json h = parse_header_json(reinterpret_cast<const char*>(p + 8), n, source);
  if (!h.is_object()) fail(where(source), "header is not a JSON object");

  Safetensors out;
  out.source = source;
  const unsigned char* buf = p + 8 + n;
  const uint64_t buf_bytes = bytes - 8 - n;

  std::vector<Entry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      out.metadata = parse_metadata(it.value(), source);
      continue;
    }
    if (it.key().empty()) fail(where(source), "a tensor has an empty name");
    Entry e = parse_entry(source, it.key(), it.value());
    if (e.end > buf_bytes)
      fail(where(source), "tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
           "] lie beyond the ", buf_bytes, "-byte data buffer (truncated file?)");
    entries.push_back(std::move(e));
  }

  // The spec requires the tensors to cover the buffer exactly: no overlaps, gaps or tail.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    if (e->begin < covered)
      fail(where(source), "tensor '", e->name, "': data_offsets [", e->begin, ", ", e->end,
           "] overlap tensor '", prev->name, "' [", prev->begin, ", ", prev->end, "]");
    if (e->begin > covered)
      fail(where(source), "tensor '", e->name, "': data_offsets begin at ", e->begin, " but the previous tensor",
           prev ? " '" + prev->name + "'" : std::string(), " ends at ", covered,
           " (the buffer must be covered without gaps)");
    covered = e->end;
    prev = e;
  }
  if (covered != buf_bytes)
    fail(where(source), "data buffer has ", buf_bytes, " bytes but the tensors cover only ", covered,
         " (trailing garbage after the last tensor)");

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, library_dtype(e.dtype->kind));
    convert(*e.dtype, buf + e.begin, t.numel(), t, source, e.name);
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

Safetensors read_safetensors(const std::string& path) {
  const std::string bytes = read_file(path);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

StringMap read_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot read '", path, "': ", std::strerror(errno), " (check the path)");
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (size < 8) fail(where(path), "file is ", size, " bytes, shorter than the 8-byte header length (truncated?)");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  const uint64_t n = load_le<uint64_t>(len);
  if (n > size - 8)
    fail(where(path), "header length ", n, " exceeds the ", size - 8,
         " bytes after the length field (truncated or not a safetensors file)");
  if (n > kMaxHeaderBytes) fail(where(path), "header length ", n, " exceeds the format's 100 MB limit");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (!in) fail("cannot read '", path, "': read error");
  if (n == 0 || text[0] != '{') fail(where(path), "header is not a JSON object (must start with '{')");
  json h = parse_header_json(text.data(), n, path);
  if (!h.is_object()) fail(where(path), "header is not a JSON object");
  if (!h.contains("__metadata__")) return {};
  return parse_metadata(h["__metadata__"], path);
}

}  // namespace attn::io
