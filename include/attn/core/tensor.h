// attn::Tensor — an n-dimensional array of f32, bf16 or i32 with shape and strides over
// shared, 64-byte aligned storage. Copies of a Tensor share storage (like torch.Tensor);
// clone() makes a deep copy. Views (slice, transpose, reshape of contiguous data, select)
// share storage with their base.
//
// Shapes are listed outermost first; strides are in elements, not bytes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/core/error.h"

namespace attn {

using Shape = std::vector<int64_t>;

// "[2, 3, 4]" — used in every shape error message.
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
// Row-major (C order) strides for a shape.
Shape contiguous_strides(const Shape& s);

// Raw aligned buffer (from the storage cache, storage_cache.h). Never used directly outside
// Tensor.
class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class Tensor {
 public:
  // An undefined tensor (defined() == false): the "absent" value for optional tensors.
  Tensor() = default;

  // Allocation. Throws attn::Error when the shape has a negative size or the allocation fails.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value, DType dtype = DType::f32);
  // Copies `values` (size must equal the shape's element count).
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector_i32(const std::vector<int32_t>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  // size(-1) is the last dimension.
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }
  bool is_contiguous() const;

  // Typed pointer to element [0, 0, ...] of this view. Throws if T does not match dtype().
  template <typename T>
  T* data();
  template <typename T>
  const T* data() const;
  void* raw_data();
  const void* raw_data() const;

  // Element access for tests and small code (slow: computes the offset each call).
  // Reads any dtype as float; i32 values are converted.
  float get(std::initializer_list<int64_t> idx) const;
  void set(std::initializer_list<int64_t> idx, float value);

  // Views sharing storage.
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end)
  Tensor select(int64_t dim, int64_t index) const;              // removes `dim`
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor unsqueeze(int64_t dim) const;
  // A view with a new shape; requires contiguous data (throws otherwise). One -1 allowed.
  Tensor view(const Shape& shape) const;
  // view() when contiguous, otherwise a contiguous copy reshaped.
  Tensor reshape(const Shape& shape) const;

  // Copies.
  Tensor contiguous() const;  // returns *this when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  // All elements as float, in row-major order of this view (any dtype).
  std::vector<float> to_vector() const;
  // Copies src (same shape, any dtype) into this view.
  void copy_from(const Tensor& src);
  void fill(float value);

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::f32;

  int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) const;
  int64_t element_offset(std::initializer_list<int64_t> idx, const char* op) const;
};

template <typename T>
T* Tensor::data() {
  ATTN_CHECK(defined(), "Tensor::data: tensor is undefined");
  ATTN_CHECK(dtype_of<T>() == dtype_, "Tensor::data: tensor holds ", dtype_name(dtype_),
             ", requested ", dtype_name(dtype_of<T>()));
  return static_cast<T*>(storage_->data()) + offset_;
}

template <typename T>
const T* Tensor::data() const {
  ATTN_CHECK(defined(), "Tensor::data: tensor is undefined");
  ATTN_CHECK(dtype_of<T>() == dtype_, "Tensor::data: tensor holds ", dtype_name(dtype_),
             ", requested ", dtype_name(dtype_of<T>()));
  return static_cast<const T*>(storage_->data()) + offset_;
}

}  // namespace attn
