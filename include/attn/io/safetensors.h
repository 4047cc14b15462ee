// Hugging Face safetensors files (https://github.com/huggingface/safetensors, format spec in
// its README): an 8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string value>"}}
// then the byte buffer; offsets are relative to the buffer and the tensors cover it exactly.
//
// Reading accepts F32, BF16 and I32 as they are and converts the other numeric dtypes:
// F64 and F16 to f32, I64 / I16 / I8 / U8 / U16 / U32 / U64 / BOOL to i32 (an integer outside
// i32's range, or a finite F64 outside f32's range, is an error naming the tensor).
// Every malformed file gives an attn::Error naming the file and, where one is involved, the
// tensor.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "attn/core/tensor.h"

namespace attn::io {

using TensorList = std::vector<std::pair<std::string, Tensor>>;
using StringMap = std::map<std::string, std::string>;

// The parsed contents of a safetensors file.
struct Safetensors {
  std::string source;                  // path (or "<memory>") for error messages
  std::map<std::string, Tensor> tensors;
  StringMap metadata;                  // the "__metadata__" object (empty when absent)

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor called `name`; throws attn::Error naming the file, the tensor and a few of
  // the names that do exist.
  const Tensor& at(const std::string& name) const;
  // The metadata value for `key`; throws attn::Error naming the file and the key.
  const std::string& meta(const std::string& key) const;
  // All tensor names starting with `prefix`, sorted.
  std::vector<std::string> names_with_prefix(const std::string& prefix) const;
};

// Serialises tensors (any layout; f32 / bf16 / i32, and f64 as F64 — which the reader
// above returns as f32) and metadata into safetensors bytes.
// Tensors are stored sorted by name; the header is padded with spaces to a multiple of 8
// bytes so that the buffer starts aligned. Throws attn::Error on an empty, duplicate or
// "__metadata__" name, an undefined tensor, or a name / value that is not valid UTF-8.
std::string serialize_safetensors(const TensorList& tensors, const StringMap& metadata = {});

// Writes a safetensors file atomically (temporary file, fsync, rename): on any failure the
// previous file at `path` is left as it was. (From a std::map: TensorList(m.begin(), m.end()).)
void write_safetensors(const std::string& path, const TensorList& tensors,
                       const StringMap& metadata = {});

// Parses and fully validates safetensors bytes held in memory (the fuzzer's entry point).
// `source` names the data in error messages.
Safetensors parse_safetensors(const void* data, size_t bytes, const std::string& source = "<memory>");

// Reads and validates a safetensors file.
Safetensors read_safetensors(const std::string& path);

// Reads only the "__metadata__" of a safetensors file (the length field and the header, not
// the tensor data; the header JSON is validated, the tensor entries are not).
StringMap read_safetensors_metadata(const std::string& path);

}  // namespace attn::io
