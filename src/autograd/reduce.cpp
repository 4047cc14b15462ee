// Reductions: forward and backward side by side.
#include "attn/autograd/reduce.h"

#include <algorithm>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {

// Shape after reducing `axes` with keepdim (same rank), and the flag per dim.
Shape keep_shape(const char* op, const Shape& s, const std::vector<int64_t>& axes) {
  Shape k = s;
  for (int64_t ax : axes) k[detail::wrap_dim(op, ax, static_cast<int64_t>(s.size()), s)] = 1;
  return k;
}

Shape drop_shape(const Shape& s, const Shape& kept, const std::vector<int64_t>& axes) {
  std::vector<bool> red(s.size(), false);
  for (int64_t ax : axes) red[ax < 0 ? ax + static_cast<int64_t>(s.size()) : ax] = true;
  Shape out;
  for (size_t i = 0; i < s.size(); ++i)
    if (!red[i]) out.push_back(kept[i]);
  return out;
}

// out = scale * sum over axes of a
Var sum_scaled(const char* op, const Var& a, const std::vector<int64_t>& axes, bool keepdim,
               double scale) {
  const Shape ks = keep_shape(op, a.shape(), axes);
  const Shape os = keepdim ? ks : drop_shape(a.shape(), ks, axes);
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(os, a.dtype());
  dispatch(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    detail::sum_to(av.data<T>(), a.shape(), o, ks, false);
    if (scale != 1.0)
      for (int64_t i = 0; i < out.numel(); ++i) o[i] = static_cast<T>(o[i] * scale);
  });
  Shape in_shape = a.shape();
  return make_result(out, op, {&a}, [ks, in_shape, scale, op](Node& self) {
    // out = scale * sum(a);  da = scale * dout broadcast back over the reduced axes
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      Shape sg = detail::broadcast_strides(ks, in_shape);
      Shape zero(in_shape.size(), 0);
      detail::broadcast_loop(in_shape, sg, zero, [&](int64_t i, int64_t ig, int64_t) {
        T v = static_cast<T>(g[ig] * scale);
        d[i] = acc ? d[i] + v : v;
      });
    });
  });
}

std::vector<int64_t> all_axes(const Var& a) {
  std::vector<int64_t> ax(static_cast<size_t>(a.dim()));
  for (int64_t i = 0; i < a.dim(); ++i) ax[static_cast<size_t>(i)] = i;
  return ax;
}

double count(const Shape& s, const std::vector<int64_t>& axes) {
  double n = 1;
  for (int64_t ax : axes) n *= static_cast<double>(s[ax < 0 ? ax + static_cast<int64_t>(s.size()) : ax]);
  return n;
}

}  // namespace

Var sum(const Var& a) { return sum_scaled("sum", a, all_axes(a), false, 1.0); }
Var sum(const Var& a, const std::vector<int64_t>& axes, bool keepdim) {
  return sum_scaled("sum", a, axes, keepdim, 1.0);
}
Var mean(const Var& a) { return sum_scaled("mean", a, all_axes(a), false, 1.0 / static_cast<double>(a.numel())); }
Var mean(const Var& a, const std::vector<int64_t>& axes, bool keepdim) {
  keep_shape("mean", a.shape(), axes);  // validates axes before count() reads them
  return sum_scaled("mean", a, axes, keepdim, 1.0 / count(a.shape(), axes));
}

Var max(const Var& a, int64_t axis, bool keepdim) {
  const int64_t d = detail::wrap_dim("max", axis, a.dim(), a.shape());
  ATTN_CHECK(a.size(d) > 0, "max: cannot reduce empty dim ", d, " of shape ", shape_str(a.shape()));
  auto sp = detail::split_axis(a.shape(), d);
  Shape os = a.shape();
  if (keepdim) os[d] = 1;
  else os.erase(os.begin() + d);
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(os, a.dtype());
  auto arg = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(sp.outer * sp.inner));
  dispatch(a.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* o = out.data<T>();
    for (int64_t p = 0; p < sp.outer; ++p)
      for (int64_t q = 0; q < sp.inner; ++q) {
        const T* row = x + p * sp.n * sp.inner + q;
        int64_t best = 0;
        for (int64_t j = 1; j < sp.n; ++j)
          if (row[j * sp.inner] > row[best * sp.inner]) best = j;
        o[p * sp.inner + q] = row[best * sp.inner];
        (*arg)[static_cast<size_t>(p * sp.inner + q)] = best;
      }
  });
  return make_result(out, "max", {&a}, [arg, sp](Node& self) {
    // out = a[argmax];  da[argmax] += dout, 0 elsewhere
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "max", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      bool acc;
      Tensor& dt = grad_buffer(*t, &acc);
      if (!acc) detail::zero(dt);
      T* dd = dt.data<T>();
      for (int64_t p = 0; p < sp.outer; ++p)
        for (int64_t q = 0; q < sp.inner; ++q) {
          int64_t i = p * sp.inner + q;
          dd[(p * sp.n + (*arg)[static_cast<size_t>(i)]) * sp.inner + q] += g[i];
        }
    });
  });
}

}  // namespace attn::ag
