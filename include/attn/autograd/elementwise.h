// Element-wise differentiable ops: broadcasting arithmetic (numpy rules, like torch) and
// activations. Inputs of one op share a dtype (f32, or f64 for gradient checks).
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

// a, b broadcast to a common shape; the gradient of each is summed back to its own shape.
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);

// With a constant.
Var add(const Var& a, double s);
Var mul(const Var& a, double s);
Var sub(const Var& a, double s);    // a - s
Var rsub(double s, const Var& a);   // s - a
Var div(const Var& a, double s);

Var neg(const Var& a);
Var exp(const Var& a);
Var log(const Var& a);
Var sqrt(const Var& a);
Var pow(const Var& a, double p);  // a^p for a > 0 (or integer p)

Var tanh(const Var& a);
Var sigmoid(const Var& a);
Var relu(const Var& a);

// GELU. erf (exact, torch.nn.functional.gelu's default) or tanh approximation
// (approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
enum class GeluApprox { none, tanh };
Var gelu(const Var& a, GeluApprox approx = GeluApprox::none);

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator+(const Var& a, double s) { return add(a, s); }
inline Var operator-(const Var& a, double s) { return sub(a, s); }
inline Var operator*(const Var& a, double s) { return mul(a, s); }
inline Var operator*(double s, const Var& a) { return mul(a, s); }
inline Var operator/(const Var& a, double s) { return div(a, s); }
inline Var operator-(const Var& a) { return neg(a); }

}  // namespace attn::ag
