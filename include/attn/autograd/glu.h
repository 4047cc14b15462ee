// Gated linear unit with the residual connection and padding mask of a ConvS2S block, fused
// into one op (one pass forward, one backward) instead of split, sigmoid, mul, add, mul, mul.
#pragma once

#include "attn/autograd/var.h"

namespace attn::ag {

// h: [..., 2C] = [a; b] (a the first C features of the last dim, b the last C),
// residual: [..., C] or undefined (= 0), row_mask: one weight per row of the leading dims
// (numel = numel(h) / 2C, any shape; undefined = all 1; not differentiated) ->
//   y[..., c] = row_mask · scale · (a[..., c] σ(b[..., c]) + residual[..., c])     y: [..., C]
// GLU: Dauphin et al. 2017; the residual block x_l = √0.5 (GLU(conv(x_{l-1})) + x_{l-1}):
// Gehring et al. 2017, §3.2–3.4. f32 or f64; h, residual and row_mask of the same dtype.
Var glu(const Var& h, const Var& residual = Var(), double scale = 1.0, const Tensor& row_mask = Tensor());

}  // namespace attn::ag
