#include "attn/core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include "attn/core/storage_cache.h"

namespace attn {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

// Products in uint64_t: a shape holding a 0 (no elements, so never allocated large) may have
// other sizes whose product overflows int64 (fuzz_npy crash-8f46e74f); wrapping is defined
// and the strides of an empty tensor are never used to address memory. Shapes with
// elements are bounded by Tensor::empty.
int64_t shape_numel(const Shape& s) {
  uint64_t n = 1;
  for (int64_t d : s) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  uint64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = static_cast<int64_t>(acc);
    acc *= static_cast<uint64_t>(s[i]);
  }
  return st;
}

Storage::Storage(size_t bytes) : bytes_(bytes) { data_ = storage_alloc(bytes); }

Storage::~Storage() { storage_free(data_, bytes_); }

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) {
    ATTN_CHECK(d >= 0, "Tensor::empty: negative size in shape ", shape_str(shape));
    ATTN_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / 8 / d,
               "Tensor::empty: shape ", shape_str(shape), " is too large to allocate");
    n *= d;
  }
  Tensor t;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype));
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.storage_->data(), 0, t.storage_->bytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  ATTN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector: ",
             values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f32);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_vector_i32(const std::vector<int32_t>& values, const Shape& shape) {
  ATTN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector_i32: ",
             values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DType::i32);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

int64_t Tensor::wrap_dim(int64_t d, int64_t ndim, const char* op) const {
  int64_t w = d < 0 ? d + ndim : d;
  ATTN_CHECK(w >= 0 && w < ndim, op, ": dimension ", d, " out of range for shape ", shape_str(shape_));
  return w;
}

int64_t Tensor::size(int64_t d) const { return shape_[wrap_dim(d, dim(), "Tensor::size")]; }
int64_t Tensor::stride(int64_t d) const { return strides_[wrap_dim(d, dim(), "Tensor::stride")]; }

bool Tensor::is_contiguous() const {
  uint64_t acc = 1;  // wraps like contiguous_strides for empty shapes with huge sizes
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != static_cast<int64_t>(acc)) return false;
    acc *= static_cast<uint64_t>(shape_[i]);
  }
  return true;
}

void* Tensor::raw_data() {
  ATTN_CHECK(defined(), "Tensor::raw_data: tensor is undefined");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

const void* Tensor::raw_data() const {
  ATTN_CHECK(defined(), "Tensor::raw_data: tensor is undefined");
  return static_cast<const char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

int64_t Tensor::element_offset(std::initializer_list<int64_t> idx, const char* op) const {
  ATTN_CHECK(static_cast<int64_t>(idx.size()) == dim(), op, ": ", idx.size(),
             " indices for a tensor of shape ", shape_str(shape_));
  int64_t off = 0;
  size_t d = 0;
  for (int64_t i : idx) {
    ATTN_CHECK(i >= 0 && i < shape_[d], op, ": index ", i, " out of range in dimension ", d,
               " of shape ", shape_str(shape_));
    off += i * strides_[d];
    ++d;
  }
  return off;
}

namespace {
float load_as_float(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const bf16*>(base)[i]);
    case DType::i32: return static_cast<float>(static_cast<const int32_t*>(base)[i]);
    case DType::f64: return static_cast<float>(static_cast<const double*>(base)[i]);
  }
  return 0.f;
}
// Lossless for f32, i32 and f64; used by copy_from when either side is f64.
double load_as_double(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f64: return static_cast<const double*>(base)[i];
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    default: return load_as_float(base, t, i);
  }
}
void store_from_float(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::f32: static_cast<float*>(base)[i] = v; break;
    case DType::bf16: static_cast<bf16*>(base)[i] = f32_to_bf16(v); break;
    case DType::i32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
    case DType::f64: static_cast<double*>(base)[i] = v; break;
  }
}
void store_from_double(void* base, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f64: static_cast<double*>(base)[i] = v; break;
    case DType::i32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
    default: store_from_float(base, t, i, static_cast<float>(v)); break;
  }
}

// Calls fn(offset_in_elements) for every element of a strided view, row-major order.
template <typename Fn>
void for_each_offset(const Shape& shape, const Shape& strides, Fn&& fn) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  const size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t off = 0;
  for (int64_t k = 0; k < n; ++k) {
    fn(off);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= (shape[d] - 1) * strides[d];
      idx[d] = 0;
    }
  }
}
// dst (any layout) = src (same shape and element size, any layout), element bits copied.
template <typename E>
void copy_strided(Tensor& dst, const Tensor& src) {
  const Shape& shape = dst.shape();
  const size_t nd = shape.size();
  std::vector<int64_t> dstr(nd), sstr(nd);
  for (size_t k = 0; k < nd; ++k) {
    dstr[k] = dst.stride(static_cast<int64_t>(k));
    sstr[k] = src.stride(static_cast<int64_t>(k));
  }
  const int64_t inner = shape[nd - 1], ds = dstr[nd - 1], ss = sstr[nd - 1];
  if (inner == 0) return;
  const int64_t rows = shape_numel(shape) / inner;
  E* d = static_cast<E*>(dst.raw_data());
  const E* s = static_cast<const E*>(src.raw_data());
  std::vector<int64_t> idx(nd, 0);
  int64_t od = 0, os = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (ds == 1 && ss == 1) {
      std::memcpy(d + od, s + os, sizeof(E) * static_cast<size_t>(inner));
    } else {
      for (int64_t j = 0; j < inner; ++j) d[od + j * ds] = s[os + j * ss];
    }
    for (size_t k = nd - 1; k-- > 0;) {
      if (++idx[k] < shape[k]) {
        od += dstr[k];
        os += sstr[k];
        break;
      }
      od -= (shape[k] - 1) * dstr[k];
      os -= (shape[k] - 1) * sstr[k];
      idx[k] = 0;
    }
  }
}
}  // namespace

float Tensor::get(std::initializer_list<int64_t> idx) const {
  return load_as_float(raw_data(), dtype_, element_offset(idx, "Tensor::get"));
}

void Tensor::set(std::initializer_list<int64_t> idx, float value) {
  store_from_float(raw_data(), dtype_, element_offset(idx, "Tensor::set"), value);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  d = wrap_dim(d, dim(), "Tensor::slice");
  ATTN_CHECK(0 <= start && start <= end && end <= shape_[d], "Tensor::slice: range [", start, ", ",
             end, ") out of bounds for dimension ", d, " of shape ", shape_str(shape_));
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = end - start;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "Tensor::select");
  ATTN_CHECK(0 <= index && index < shape_[d], "Tensor::select: index ", index,
             " out of bounds for dimension ", d, " of shape ", shape_str(shape_));
  Tensor t = *this;
  t.offset_ += index * strides_[d];
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, dim(), "Tensor::transpose");
  d1 = wrap_dim(d1, dim(), "Tensor::transpose");
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "Tensor::unsqueeze");
  Tensor t = *this;
  int64_t st = d < dim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, st);
  return t;
}

Tensor Tensor::view(const Shape& shape) const {
  ATTN_CHECK(is_contiguous(), "Tensor::view: tensor of shape ", shape_str(shape_),
             " is not contiguous; use reshape() or contiguous()");
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      ATTN_CHECK(infer < 0, "Tensor::view: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      ATTN_CHECK(s[i] >= 0, "Tensor::view: negative size in ", shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    ATTN_CHECK(known != 0 && numel() % known == 0, "Tensor::view: cannot view shape ",
               shape_str(shape_), " as ", shape_str(shape));
    s[infer] = numel() / known;
  }
  ATTN_CHECK(shape_numel(s) == numel(), "Tensor::view: cannot view shape ", shape_str(shape_),
             " (", numel(), " elements) as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  ATTN_CHECK(defined(), "Tensor::clone: tensor is undefined");
  Tensor t = empty(shape_, dtype_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(numel()));
  const void* base = raw_data();
  for_each_offset(shape_, strides_, [&](int64_t off) { out.push_back(load_as_float(base, dtype_, off)); });
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  ATTN_CHECK(src.shape_ == shape_, "Tensor::copy_from: source shape ", shape_str(src.shape_),
             " differs from destination shape ", shape_str(shape_));
  if (numel() == 0) return;
  if (src.dtype_ == dtype_ && is_contiguous() && src.is_contiguous()) {
    std::memmove(raw_data(), src.raw_data(), static_cast<size_t>(numel()) * dtype_size(dtype_));
    return;
  }
  if (src.dtype_ == dtype_ && dim() > 0) {
    // Same dtype, any layouts (transposes, slices): a bitwise copy row by row over the last
    // dim — memcpy when both rows are dense — instead of the per-element gather below.
    switch (dtype_size(dtype_)) {
      case 2: copy_strided<uint16_t>(*this, src); return;
      case 4: copy_strided<uint32_t>(*this, src); return;
      case 8: copy_strided<uint64_t>(*this, src); return;
      default: break;
    }
  }
  // Gather source offsets in row-major order, then scatter; handles aliasing-free copies
  // between any dtypes and layouts.
  std::vector<int64_t> src_off;
  src_off.reserve(static_cast<size_t>(numel()));
  for_each_offset(src.shape_, src.strides_, [&](int64_t off) { src_off.push_back(off); });
  const void* sb = src.raw_data();
  void* db = raw_data();
  size_t k = 0;
  if (src.dtype_ == DType::i32 && dtype_ == DType::i32) {
    for_each_offset(shape_, strides_, [&](int64_t off) {
      static_cast<int32_t*>(db)[off] = static_cast<const int32_t*>(sb)[src_off[k++]];
    });
    return;
  }
  if (src.dtype_ == DType::f64 || dtype_ == DType::f64) {
    for_each_offset(shape_, strides_, [&](int64_t off) {
      store_from_double(db, dtype_, off, load_as_double(sb, src.dtype_, src_off[k++]));
    });
    return;
  }
  for_each_offset(shape_, strides_, [&](int64_t off) {
    store_from_float(db, dtype_, off, load_as_float(sb, src.dtype_, src_off[k++]));
  });
}

void Tensor::fill(float value) {
  void* base = raw_data();
  if (dtype_ == DType::f32 && is_contiguous()) {
    std::fill_n(static_cast<float*>(base), numel(), value);
    return;
  }
  for_each_offset(shape_, strides_, [&](int64_t off) { store_from_float(base, dtype_, off, value); });
}

}  // namespace attn
