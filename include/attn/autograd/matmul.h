// Matrix products through the BLAS (attn::cpu::sgemm; a plain loop for f64).
#pragma once

#include <cstdint>

#include "attn/autograd/var.h"

namespace attn::ag {

// a: [..., M, K], b: [K, N] -> [..., M, N] (one GEMM over all leading rows), or
// a: [..., M, K], b: [..., K, N] with equal leading dims -> [..., M, N] (batched).
Var matmul(const Var& a, const Var& b);

// Batched product with optional transposes: a [Bt, M, K] (or [Bt, K, M] when trans_a),
// b [Bt, K, N] (or [Bt, N, K] when trans_b) -> [Bt, M, N].
Var bmm(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);

// torch.nn.functional.linear: x [..., in], weight [out, in], bias [out] (optional,
// undefined Var = none) -> [..., out] = x weightᵀ + bias. One GEMM forward, two backward.
Var linear(const Var& x, const Var& weight, const Var& bias = Var());

// The first half of a Transformer feed-forward block in one op:
//   dropout(relu(linear(x, weight, bias)), p, seed, offset)   (see dropout.h for the mask)
// ReLU and dropout run in place on the GEMM output and only that output is kept; the backward
// forms d(pre-activation) and the bias gradient in one pass. Same masks and floats as the
// composition. f64 (gradient checks) runs the composition itself.
Var linear_relu_dropout(const Var& x, const Var& weight, const Var& bias, double p, uint64_t seed,
                        uint64_t offset = 0);

}  // namespace attn::ag
