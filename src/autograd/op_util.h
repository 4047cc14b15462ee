// Private helpers shared by the op files: building result nodes, gradient buffers, dtype
// dispatch and broadcast iteration. Not part of the public API.
#pragma once

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include <omp.h>

#include "attn/autograd/var.h"
#include "attn/core/error.h"

namespace attn::ag::detail {

// Element-wise loops split over OpenMP threads from this many elements on (each element
// independent, so results do not depend on the thread count).
constexpr int64_t kParallelMin = 1 << 15;

// Calls f(begin, end) over [0, n) in blocks of 2^14 elements, the blocks split over OpenMP
// threads when n >= kParallelMin (for element-wise kernels: same result for any thread count).
template <typename F>
void for_blocks(int64_t n, F&& f) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) f(b * kBlock, std::min(n, (b + 1) * kBlock));
}

// Calls f(row_begin, row_end) over [0, rows) rows of `width` elements, in blocks split over
// OpenMP threads when rows * width >= kParallelMin (rows independent).
template <typename F>
void for_row_blocks(int64_t rows, int64_t width, F&& f) {
  const int64_t per = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(width, 1));
  const int64_t blocks = (rows + per - 1) / per;
#pragma omp parallel for schedule(static) if (rows * width >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) f(b * per, std::min(rows, (b + 1) * per));
}

// Calls f(col_begin, col_end) over [0, cols): one chunk per OpenMP thread (multiples of 16
// columns) when rows * cols >= kParallelMin, else one call. For column reductions whose
// per-column order must not depend on the thread count (each call sums its columns over every
// row; more chunks than threads would only re-read the rows).
template <typename F>
void for_col_blocks(int64_t rows, int64_t cols, F&& f) {
  const int64_t threads = rows * cols >= kParallelMin ? omp_get_max_threads() : 1;
  const int64_t chunk = std::max<int64_t>(16, ((cols + threads - 1) / threads + 15) / 16 * 16);
  const int64_t blocks = (cols + chunk - 1) / chunk;
  if (blocks <= 1) {
    f(int64_t{0}, cols);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) f(b * chunk, std::min(cols, (b + 1) * chunk));
}

// Calls f(float{}) or f(double{}) by the dtype; other dtypes are an error naming op.
template <typename F>
decltype(auto) dispatch(DType t, const char* op, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  fail(op, ": expected an f32 or f64 tensor, got ", dtype_name(t));
}

// Same dtype for every input of an op.
inline void check_same_dtype(const char* op, const Var& a, const Var& b) {
  ATTN_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()), ")");
}

// True when any input requires grad and recording is on.
inline bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!grad_enabled()) return false;
  for (const Var* v : inputs)
    if (v->defined() && v->requires_grad()) return true;
  return false;
}

// The result of an op: records inputs and the backward closure when any input needs grad.
// Undefined Vars in `inputs` (absent optional arguments) are recorded as null.
Var make_result(Tensor value, const char* op, std::initializer_list<const Var*> inputs,
                BackwardFn backward);
Var make_result(Tensor value, const char* op, const std::vector<Var>& inputs, BackwardFn backward);

// Input i of a node when it needs a gradient, else nullptr.
inline Node* grad_target(Node& self, size_t i) {
  Node* n = self.inputs[i].get();
  return (n && n->requires_grad) ? n : nullptr;
}

// The grad buffer of n to write into: allocated (uninitialised) when undefined, in which case
// *accumulate is false and the caller must overwrite every element; else *accumulate is true
// and the caller must add.
Tensor& grad_buffer(Node& n, bool* accumulate);

// n.grad += g (g contiguous, n.value's shape; same dtype).
void accumulate(Node& n, const Tensor& g);

// Sets a contiguous tensor to zero with memset (Tensor::fill goes element by element).
inline void zero(Tensor& t) {
  std::memset(t.raw_data(), 0, static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
}

// A contiguous copy of a strided f32 / f64 view (typed loops; Tensor::contiguous() goes
// element by element through a dtype switch). Returns t itself when already contiguous.
Tensor contiguous(const Tensor& t);

// Contiguous view or copy of a value, typed.
template <typename T>
const T* cdata(const Tensor& t, Tensor* keep) {
  *keep = t.contiguous();
  return keep->data<T>();
}

// Broadcast shape of a and b (numpy rules); error names op and both shapes.
Shape broadcast_shape(const char* op, const Shape& a, const Shape& b);

// Strides of `s` read as shape `out` (s right-aligned; size-1 and missing dims get stride 0).
Shape broadcast_strides(const Shape& s, const Shape& out);

// Calls fn(i_out, off_a, off_b) for every element of `out` in row-major order, where off_a and
// off_b are the element offsets into a and b under the broadcast strides sa and sb.
template <typename Fn>
void broadcast_loop(const Shape& out, const Shape& sa, const Shape& sb, Fn&& fn) {
  const int64_t n = shape_numel(out);
  if (n == 0) return;
  const size_t nd = out.size();
  if (nd == 0) {
    fn(int64_t{0}, int64_t{0}, int64_t{0});
    return;
  }
  const int64_t inner = out[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  std::vector<int64_t> idx(nd, 0);
  int64_t oa = 0, ob = 0;
  for (int64_t base = 0; base < n; base += inner) {
    for (int64_t j = 0; j < inner; ++j) fn(base + j, oa + j * ia, ob + j * ib);
    for (size_t d = nd - 1; d-- > 0;) {
      if (++idx[d] < out[d]) {
        oa += sa[d];
        ob += sb[d];
        break;
      }
      oa -= (out[d] - 1) * sa[d];
      ob -= (out[d] - 1) * sb[d];
      idx[d] = 0;
    }
  }
}

// Sum of g (shape `from`, contiguous) over broadcast dims down to shape `to`; added into dst
// (contiguous, shape `to`) when accumulate, else written.
template <typename T>
void sum_to(const T* g, const Shape& from, T* dst, const Shape& to, bool accumulate) {
  const int64_t nt = shape_numel(to);
  if (from == to) {
    if (accumulate)
      for (int64_t i = 0; i < nt; ++i) dst[i] += g[i];
    else
      std::memcpy(static_cast<void*>(dst), g, sizeof(T) * static_cast<size_t>(nt));
    return;
  }
  if (!accumulate) std::memset(static_cast<void*>(dst), 0, sizeof(T) * static_cast<size_t>(nt));
  Shape st = broadcast_strides(to, from);
  Shape zero(from.size(), 0);
  broadcast_loop(from, st, zero, [&](int64_t i, int64_t o, int64_t) { dst[o] += g[i]; });
}

// [outer, n, inner] factorisation of a shape around dimension d.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisSplit split_axis(const Shape& s, int64_t d);

// Wraps a possibly negative dim; error names op and shape.
int64_t wrap_dim(const char* op, int64_t d, int64_t ndim, const Shape& shape);

// Matrix product on raw row-major pointers; f32 goes to the BLAS, f64 to a plain loop
// (f64 is for gradient checks only).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// out [rows, N] = x [rows, K] wᵀ + bias (w [N, K], bias [N], all contiguous): bias copied
// into every row (rows over threads), then a beta = 1 product. Under bf16 products
// (cpu::matmul_precision()) the bf16 GEMM starts its sums from the bias instead: the same
// values without the fill pass.
void gemm_xwt_bias(int64_t rows, int64_t N, int64_t K, const float* x, const float* w, const float* bias,
                   float* out);
void gemm_xwt_bias(int64_t rows, int64_t N, int64_t K, const double* x, const double* w, const double* bias,
                   double* out);

}  // namespace attn::ag::detail
