// Shape ops: forward and backward side by side.
#include "attn/autograd/shape_ops.h"

#include <cstring>
#include <utility>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var reshape(const Var& a, const Shape& shape) {
  Tensor out = a.value().reshape(shape);
  Shape in_shape = a.shape();
  return make_result(out, "reshape", {&a}, [in_shape](Node& self) {
    // out = reshape(a);  da = reshape(dout, a.shape)
    Node* t = grad_target(self, 0);
    if (!t) return;
    if (!t->grad.defined())
      t->grad = self.grad.view(in_shape);  // self's grad is released after this: no copy
    else
      detail::accumulate(*t, self.grad.view(in_shape));
  });
}

Var transpose(const Var& a, int64_t d0, int64_t d1) {
  d0 = detail::wrap_dim("transpose", d0, a.dim(), a.shape());
  d1 = detail::wrap_dim("transpose", d1, a.dim(), a.shape());
  Tensor out = detail::contiguous(a.value().transpose(d0, d1));
  return make_result(out, "transpose", {&a}, [d0, d1](Node& self) {
    // out = a.transpose(d0, d1);  da = dout.transpose(d0, d1)
    Node* t = grad_target(self, 0);
    if (!t) return;
    Tensor g = detail::contiguous(self.grad.transpose(d0, d1));  // a fresh copy, or self's grad
    if (!t->grad.defined())
      t->grad = std::move(g);  // self's grad is released after this: no second copy
    else
      detail::accumulate(*t, g);
  });
}

namespace {
// dst[p, off:off+m, :] (+)= src[p, :, :] for the [outer, n, inner] split of dst;
// when !acc the part of dst outside the range must already be handled by the caller.
template <typename T>
void add_block(T* dst, int64_t dst_n, const T* src, int64_t m, int64_t off, int64_t outer,
               int64_t inner, bool acc) {
  const int64_t len = m * inner;
  for (int64_t p = 0; p < outer; ++p) {
    T* d = dst + (p * dst_n + off) * inner;
    const T* s = src + p * len;
    if (acc)
      for (int64_t i = 0; i < len; ++i) d[i] += s[i];
    else
      std::memcpy(static_cast<void*>(d), s, sizeof(T) * static_cast<size_t>(len));
  }
}
}  // namespace

Var slice(const Var& a, int64_t dim, int64_t start, int64_t end) {
  dim = detail::wrap_dim("slice", dim, a.dim(), a.shape());
  ATTN_CHECK(0 <= start && start <= end && end <= a.size(dim), "slice: range [", start, ", ", end,
             ") out of bounds for dim ", dim, " of shape ", shape_str(a.shape()));
  Tensor out = detail::contiguous(a.value().slice(dim, start, end));
  auto sp = detail::split_axis(a.shape(), dim);
  Var r = make_result(out, "slice", {&a}, [sp, start, end](Node& self) {
    // out = a[..., start:end, ...];  da[..., start:end, ...] += dout, 0 elsewhere
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "slice", [&](auto tag) {
      using T = decltype(tag);
      bool acc;
      Tensor& dt = grad_buffer(*t, &acc);
      if (!acc) detail::zero(dt);
      // Already there when self's gradient is the block of t's (Node::grad_view).
      if (acc && self.grad.raw_data() == static_cast<const void*>(dt.data<T>() + start * sp.inner) && sp.outer == 1)
        return;
      add_block(dt.data<T>(), sp.n, self.grad.data<T>(), end - start, start, sp.outer, sp.inner, true);
    });
  });
  // A block of a contiguous input: its gradient can be a block of the input's (see Node).
  if (sp.outer == 1 && r.requires_grad() && end > start) r.node()->grad_view = {dim, start, end};
  return r;
}

Var concat(const std::vector<Var>& xs, int64_t dim) {
  ATTN_CHECK(!xs.empty(), "concat: no inputs");
  const Shape& s0 = xs[0].shape();
  dim = detail::wrap_dim("concat", dim, xs[0].dim(), s0);
  Shape os = s0;
  os[dim] = 0;
  std::vector<int64_t> sizes;
  for (const Var& x : xs) {
    detail::check_same_dtype("concat", xs[0], x);
    Shape a = x.shape(), b = s0;
    ATTN_CHECK(a.size() == b.size(), "concat: shapes ", shape_str(s0), " and ", shape_str(x.shape()),
               " differ in rank");
    a[dim] = b[dim] = 0;
    ATTN_CHECK(a == b, "concat: shapes ", shape_str(s0), " and ", shape_str(x.shape()),
               " differ outside dim ", dim);
    os[dim] += x.size(dim);
    sizes.push_back(x.size(dim));
  }
  Tensor out = Tensor::empty(os, xs[0].dtype());
  auto sp = detail::split_axis(os, dim);
  dispatch(out.dtype(), "concat", [&](auto tag) {
    using T = decltype(tag);
    int64_t off = 0;
    for (const Var& x : xs) {
      Tensor xv = x.value().contiguous();
      add_block(out.data<T>(), sp.n, xv.data<T>(), x.size(dim), off, sp.outer, sp.inner, false);
      off += x.size(dim);
    }
  });
  return make_result(out, "concat", xs, [sp, sizes](Node& self) {
    // out = [x_0, x_1, ...] along dim;  dx_k = dout[..., off_k : off_k + n_k, ...]
    dispatch(self.value.dtype(), "concat", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      int64_t off = 0;
      for (size_t k = 0; k < sizes.size(); ++k) {
        const int64_t m = sizes[k];
        if (Node* t = grad_target(self, k)) {
          bool acc;
          T* d = grad_buffer(*t, &acc).data<T>();
          for (int64_t p = 0; p < sp.outer; ++p) {
            const T* s = g + (p * sp.n + off) * sp.inner;
            T* dd = d + p * m * sp.inner;
            for (int64_t i = 0; i < m * sp.inner; ++i) dd[i] = acc ? dd[i] + s[i] : s[i];
          }
        }
        off += m;
      }
    });
  });
}

Var stack(const std::vector<Var>& xs, int64_t dim) {
  ATTN_CHECK(!xs.empty(), "stack: no inputs");
  dim = detail::wrap_dim("stack", dim, xs[0].dim() + 1, xs[0].shape());
  std::vector<Var> ys;
  ys.reserve(xs.size());
  for (const Var& x : xs) {
    ATTN_CHECK(x.shape() == xs[0].shape(), "stack: shapes ", shape_str(xs[0].shape()), " and ",
               shape_str(x.shape()), " differ");
    Shape s = x.shape();
    s.insert(s.begin() + dim, 1);
    ys.push_back(reshape(x, s));
  }
  return concat(ys, dim);
}

std::vector<Var> split(const Var& a, int64_t dim, const std::vector<int64_t>& sizes) {
  dim = detail::wrap_dim("split", dim, a.dim(), a.shape());
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  ATTN_CHECK(total == a.size(dim), "split: sizes sum to ", total, " but dim ", dim, " of shape ",
             shape_str(a.shape()), " has ", a.size(dim));
  std::vector<Var> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(slice(a, dim, off, off + s));
    off += s;
  }
  return out;
}

namespace {
Var gather_rows(const char* op, const Var& a, const Tensor& index, int64_t padding) {
  ATTN_CHECK(index.defined() && index.dtype() == DType::i32, op, ": index must be an i32 tensor");
  ATTN_CHECK(a.dim() >= 1, op, ": source must have at least one dim, got ", shape_str(a.shape()));
  Tensor idx = index.contiguous();
  const int64_t rows = a.size(0), width = a.numel() / std::max<int64_t>(rows, 1), n = idx.numel();
  const int32_t* ip = idx.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    ATTN_CHECK(ip[i] >= 0 && ip[i] < rows, op, ": index ", ip[i], " out of range for ", rows,
               " rows (source shape ", shape_str(a.shape()), ")");
  Shape os = index.shape();
  for (int64_t d = 1; d < a.dim(); ++d) os.push_back(a.size(d));
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(os, a.dtype());
  dispatch(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* s = av.data<T>();
    T* o = out.data<T>();
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(static_cast<void*>(o + i * width), s + ip[i] * width, sizeof(T) * static_cast<size_t>(width));
  });
  return make_result(out, op, {&a}, [idx, width, padding, op](Node& self) {
    // out[i] = a[index[i]];  da[index[i]] += dout[i] (skipping padding rows)
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const int32_t* ip = idx.data<int32_t>();
      const T* g = self.grad.data<T>();
      bool acc;
      Tensor& dt = grad_buffer(*t, &acc);
      if (!acc) detail::zero(dt);
      T* d = dt.data<T>();
      for (int64_t i = 0; i < idx.numel(); ++i) {
        if (ip[i] == padding) continue;
        T* dr = d + ip[i] * width;
        const T* gr = g + i * width;
        for (int64_t j = 0; j < width; ++j) dr[j] += gr[j];
      }
    });
  });
}
}  // namespace

Var index_select(const Var& a, const Tensor& index) {
  ATTN_CHECK(index.defined() && index.dim() == 1, "index_select: index must be 1-D, got ",
             index.defined() ? shape_str(index.shape()) : std::string("<undefined>"));
  return gather_rows("index_select", a, index, -1);
}

Var embedding(const Var& weight, const Tensor& ids, std::optional<int64_t> padding_idx) {
  ATTN_CHECK(weight.dim() == 2, "embedding: weight must be [V, E], got ", shape_str(weight.shape()));
  int64_t pad = -1;
  if (padding_idx) {
    pad = *padding_idx < 0 ? *padding_idx + weight.size(0) : *padding_idx;
    ATTN_CHECK(pad >= 0 && pad < weight.size(0), "embedding: padding_idx ", *padding_idx,
               " out of range for weight ", shape_str(weight.shape()));
  }
  return gather_rows("embedding", weight, ids, pad);
}

}  // namespace attn::ag
