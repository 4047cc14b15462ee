// The additive (Bahdanau) attention score as one fused differentiable op:
//   e[b, s] = Σ_a v[a] tanh(keys[b, s, a] + query[b, a] + extra[b, s, a])
// Composed of add / tanh / linear it makes three passes over [B, S, A] per decoder step (and
// as many backward) and calls the scalar libm tanhf; fused, it is one vectorised pass with
// a rational tanh (Eigen's ptanh_float, within a few ulp of tanhf) in f32 and std::tanh in
// f64 (gradient checks). Tested against the composed ops (tests/models/seq2seq_rnn_test.cpp).
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

// keys: [B, S, A], query: [B, A], v: A elements (e.g. a Linear weight [1, A]), extra: [B, S, A]
// or undefined -> [B, S]. Backward (t = tanh(.), g = de[b, s] v[a] (1 - t²)):
//   dkeys = dextra = g,  dquery[b, a] = Σ_s g,  dv[a] = Σ_{b, s} de[b, s] t.
Var additive_score(const Var& keys, const Var& query, const Var& v, const Var& extra = Var());

// Eigen's rational approximation of tanh for floats (clamped at ±7.9053; max error ~2 ulp).
float tanh_rational(float x);

}  // namespace attn::ag
