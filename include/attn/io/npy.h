// NumPy .npy files: read (formats 1.0, 2.0, 3.0) and write (1.0, or 2.0 when the header
// needs it), following numpy/lib/format.py ("A simple file format for NumPy arrays").
//
// Layout: "\x93NUMPY", major, minor, header length (uint16 LE for 1.0, uint32 LE for 2.0 /
// 3.0), a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n', then the raw C-order data.
//
// Reading accepts little-endian (or byte-order-free) dtypes and converts to what a Tensor
// holds:
//   '<f4' -> f32            '<f8' -> f32 (rounded; NpyInfo::conversion says so)
//   '<i4' -> i32            '<i8', '<u4', '<u8', '<i2', '<u2' -> i32 (error if a value
//   '|b1', '|u1', '|i1' -> i32                                   does not fit in int32)
// Fortran order, big-endian, structured, complex, float16 and object arrays are refused.
// Every error is an attn::Error of one line naming the file and the problem.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "attn/core/tensor.h"

namespace attn::io {

// What the file held, for messages such as "q.npy: converted float64 to float32".
struct NpyInfo {
  int major_version = 0;
  int minor_version = 0;
  std::string descr;       // the header's dtype string, e.g. "<f8"
  std::string dtype_name;  // numpy's name of that dtype, e.g. "float64"
  Shape shape;
  // Empty when the data was read as is; otherwise e.g. "float64 to float32".
  std::string conversion;
};

// Reads a .npy file into a contiguous f32 or i32 tensor.
Tensor read_npy(const std::string& path, NpyInfo* info = nullptr);

// Parses a whole .npy file held in memory; `name` (usually the path) starts every error
// message. Never reads outside [data, data + size) and allocates only after checking that
// the data is really there, so it is safe on hostile input.
Tensor parse_npy(const void* data, size_t size, const std::string& name, NpyInfo* info = nullptr);

// Writes `t` (any strides) atomically: f32 as '<f4', i32 as '<i4', bf16 as '<f4' (exact),
// f64 as '<f8' (read back, it becomes f32 like any '<f8' file).
void write_npy(const std::string& path, const Tensor& t);

// Streams the .npy encoding of `t` through `append` (the writer of write_npy, usable for
// in-memory encodings and for write_npy_files).
void encode_npy(const Tensor& t, const std::function<void(const void*, size_t)>& append);

// Writes several .npy files all or nothing: each is first written completely (and fsynced)
// under a temporary name next to its destination; only when every one has succeeded are they
// renamed into place. On failure the temporaries are removed and no destination changes.
void write_npy_files(const std::vector<std::pair<std::string, Tensor>>& files);

}  // namespace attn::io
