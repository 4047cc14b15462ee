// Element-wise ops: each forward and its backward side by side.
#include "attn/autograd/elementwise.h"

#include <algorithm>
#include <cmath>

#include "attn/kernels/cpu/elementwise.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {

enum class BinOp { add, sub, mul, div };

const char* bin_name(BinOp op) {
  switch (op) {
    case BinOp::add: return "add";
    case BinOp::sub: return "sub";
    case BinOp::mul: return "mul";
    case BinOp::div: return "div";
  }
  return "?";
}

Var binary(BinOp op, const Var& a, const Var& b) {
  const char* name = bin_name(op);
  detail::check_same_dtype(name, a, b);
  const Shape out_shape = detail::broadcast_shape(name, a.shape(), b.shape());
  Tensor av = a.value().contiguous(), bv = b.value().contiguous();
  Tensor out = Tensor::empty(out_shape, a.dtype());
  dispatch(a.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = av.data<T>();
    const T* pb = bv.data<T>();
    T* po = out.data<T>();
    auto run = [&](auto f) {
      const int64_t n = out.numel();
      if (a.shape() == out_shape && b.shape() == out_shape) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
      } else if (a.shape() == out_shape && b.numel() == 1) {
        const T s = pb[0];
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], s);
      } else if (a.shape() == out_shape && b.dim() <= a.dim() && b.numel() > 0 &&
                 std::equal(b.shape().begin(), b.shape().end(), out_shape.end() - b.dim())) {
        // b repeats over the leading dims of a (a position table, a bias): contiguous blocks.
        const int64_t m = b.numel();
        for (int64_t o = 0; o < n; o += m)
          for (int64_t i = 0; i < m; ++i) po[o + i] = f(pa[o + i], pb[i]);
      } else {
        detail::broadcast_loop(out_shape, detail::broadcast_strides(a.shape(), out_shape),
                               detail::broadcast_strides(b.shape(), out_shape),
                               [&](int64_t i, int64_t ia, int64_t ib) { po[i] = f(pa[ia], pb[ib]); });
      }
    };
    switch (op) {
      case BinOp::add: run([](T x, T y) { return x + y; }); break;
      case BinOp::sub: run([](T x, T y) { return x - y; }); break;
      case BinOp::mul: run([](T x, T y) { return x * y; }); break;
      case BinOp::div: run([](T x, T y) { return x / y; }); break;
    }
  });
  return make_result(out, name, {&a, &b}, [op, av, bv](Node& self) {
    // out = a (op) b, broadcast; each gradient is computed at the output shape and summed
    // back over the broadcast dims of its input.
    const Shape& os = self.value.shape();
    dispatch(self.value.dtype(), "add/sub/mul/div backward", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      const T* pa = av.data<T>();
      const T* pb = bv.data<T>();
      const int64_t n = self.value.numel();
      auto sa = detail::broadcast_strides(av.shape(), os), sb = detail::broadcast_strides(bv.shape(), os);
      // b's side first, so that a's side can take self's gradient over without a copy.
      for (int side = 1; side >= 0; --side) {
        Node* t = grad_target(self, side);
        if (!t) continue;
        const Shape& ts = side == 0 ? av.shape() : bv.shape();
        if (side == 0 && (op == BinOp::add || op == BinOp::sub) && ts == os && !t->grad.defined()) {
          t->grad = self.grad;  // da = dout; self's grad is released after this: no copy
          continue;
        }
        bool acc;
        Tensor& dst = grad_buffer(*t, &acc);
        // d/da: add 1, sub 1, mul b, div 1/b;  d/db: add 1, sub -1, mul a, div -a/b^2.
        if ((op == BinOp::add || (op == BinOp::sub && side == 0))) {
          detail::sum_to(g, os, dst.data<T>(), ts, acc);
          continue;
        }
        std::vector<T> tmp(static_cast<size_t>(n));
        detail::broadcast_loop(os, sa, sb, [&](int64_t i, int64_t ia, int64_t ib) {
          T x = pa[ia], y = pb[ib];
          T d;
          if (op == BinOp::sub) d = -g[i];
          else if (op == BinOp::mul) d = g[i] * (side == 0 ? y : x);
          else d = side == 0 ? g[i] / y : -g[i] * x / (y * y);
          tmp[i] = d;
        });
        detail::sum_to(tmp.data(), os, dst.data<T>(), ts, acc);
      }
    });
  });
}

// out = f(a) element-wise; backward da = dout * df(a, out).
template <typename F, typename DF>
Var unary(const char* name, const Var& a, F f, DF df) {
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  dispatch(a.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    const T* x = av.data<T>();
    T* y = out.data<T>();
    const int64_t n = av.numel();
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(f(x[i]));
  });
  return make_result(out, name, {&a}, [av, df, name](Node& self) {
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(av.dtype(), name, [&](auto tag) {
      using T = decltype(tag);
      const T* x = av.data<T>();
      const T* y = self.value.data<T>();
      const T* g = self.grad.data<T>();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      const int64_t n = av.numel();
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const T v = g[i] * static_cast<T>(df(x[i], y[i]));
        d[i] = acc ? d[i] + v : v;
      }
    });
  });
}

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

}  // namespace

Var add(const Var& a, const Var& b) { return binary(BinOp::add, a, b); }
Var sub(const Var& a, const Var& b) { return binary(BinOp::sub, a, b); }
Var mul(const Var& a, const Var& b) { return binary(BinOp::mul, a, b); }
Var div(const Var& a, const Var& b) { return binary(BinOp::div, a, b); }

// out = a + s;  da = dout
Var add(const Var& a, double s) {
  return unary("add_scalar", a, [s](auto x) { return x + s; }, [](auto, auto) { return 1.0; });
}
// out = a * s;  da = dout * s
Var mul(const Var& a, double s) {
  return unary("mul_scalar", a, [s](auto x) { return x * s; }, [s](auto, auto) { return s; });
}
Var sub(const Var& a, double s) { return add(a, -s); }
// out = s - a;  da = -dout
Var rsub(double s, const Var& a) {
  return unary("rsub_scalar", a, [s](auto x) { return s - x; }, [](auto, auto) { return -1.0; });
}
Var div(const Var& a, double s) { return mul(a, 1.0 / s); }
Var neg(const Var& a) { return mul(a, -1.0); }

// out = exp(a);  da = dout * out
Var exp(const Var& a) {
  return unary("exp", a, [](auto x) { return std::exp(x); }, [](auto, auto y) { return y; });
}
// out = log(a);  da = dout / a
Var log(const Var& a) {
  return unary("log", a, [](auto x) { return std::log(x); }, [](auto x, auto) { return 1 / x; });
}
// out = sqrt(a);  da = dout / (2 out)
Var sqrt(const Var& a) {
  return unary("sqrt", a, [](auto x) { return std::sqrt(x); }, [](auto, auto y) { return 0.5 / y; });
}
// out = a^p;  da = dout * p a^(p-1)
Var pow(const Var& a, double p) {
  return unary("pow", a, [p](auto x) { return std::pow(static_cast<double>(x), p); },
               [p](auto x, auto) { return p * std::pow(static_cast<double>(x), p - 1); });
}
// out = tanh(a);  da = dout * (1 - out^2)
Var tanh(const Var& a) {
  return unary("tanh", a, [](auto x) { return std::tanh(x); }, [](auto, auto y) { return 1 - y * y; });
}
// out = 1 / (1 + exp(-a));  da = dout * out (1 - out)
Var sigmoid(const Var& a) {
  return unary("sigmoid", a, [](auto x) { return 1 / (1 + std::exp(-x)); },
               [](auto, auto y) { return y * (1 - y); });
}
// out = max(a, 0);  da = dout * [a > 0] = dout * [out > 0]
Var relu(const Var& a) {
  if (a.dtype() != DType::f32)
    return unary("relu", a, [](auto x) { return x > 0 ? x : decltype(x)(0); },
                 [](auto x, auto) { return x > 0 ? decltype(x)(1) : decltype(x)(0); });
  // f32: SIMD kernels; the backward reads only the output (out > 0 exactly where a > 0).
  Tensor av = a.value().contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  detail::for_blocks(av.numel(), [&](int64_t b, int64_t e) {
    cpu::relu_forward(av.data<float>() + b, out.data<float>() + b, e - b);
  });
  return make_result(out, "relu", {&a}, [](Node& self) {
    Node* t = grad_target(self, 0);
    if (!t) return;
    const float* y = self.value.data<float>();
    const float* g = self.grad.data<float>();
    bool acc;
    float* d = grad_buffer(*t, &acc).data<float>();
    detail::for_blocks(self.value.numel(), [&](int64_t b, int64_t e) {
      cpu::relu_backward(y + b, g + b, d + b, e - b, acc);
    });
  });
}

Var gelu(const Var& a, GeluApprox approx) {
  if (approx == GeluApprox::tanh) {
    // out = 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3)
    // da = dout * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2))
    return unary(
        "gelu_tanh", a,
        [](auto x) {
          double xd = x;
          return 0.5 * xd * (1 + std::tanh(kSqrt2OverPi * (xd + 0.044715 * xd * xd * xd)));
        },
        [](auto x, auto) {
          double xd = x;
          double t = std::tanh(kSqrt2OverPi * (xd + 0.044715 * xd * xd * xd));
          return 0.5 * (1 + t) + 0.5 * xd * (1 - t * t) * kSqrt2OverPi * (1 + 3 * 0.044715 * xd * xd);
        });
  }
  // out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2));  da = dout * (Phi(x) + x phi(x))
  return unary(
      "gelu", a, [](auto x) { return 0.5 * x * (1 + std::erf(x * kInvSqrt2)); },
      [](auto x, auto) {
        double xd = x;
        return 0.5 * (1 + std::erf(xd * kInvSqrt2)) + xd * kInvSqrt2Pi * std::exp(-0.5 * xd * xd);
      });
}

}  // namespace attn::ag
