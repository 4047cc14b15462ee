// Multi-head attention read straight from packed projections: the heads of q, k and v are
// column ranges of linear-layer outputs [B, N, W] (for self-attention all three live in one
// [B, N, 3E] tensor), and the output comes back with its heads merged, [B, Nq, H·Dv], ready
// for the output projection. The same result as
//   transpose(reshape(slice(src, 2, col, col + H·D), [B, N, H, D]), 1, 2)   per input,
//   attention(q, k, v),  reshape(transpose(out, 1, 2), [B, Nq, H·Dv])
// without the six head split copies, the merge copy of the forward, or the scatter copies
// and zero fill of their backwards: the attention kernels read strided heads in place and the
// backward writes dq, dk, dv straight into the gradient of the packed tensors.
#pragma once

#include <cstdint>

#include "attn/autograd/attention_op.h"

namespace attn::ag {

// Heads of one attention input: columns [col, col + heads·dim) of src [B, N, W], read as
// [B, heads, N, dim]. col and W must be multiples of dim.
struct PackedHeads {
  Var src;
  int64_t col = 0;
  int64_t heads = 1;
  int64_t dim = 1;
};

// out: [B, Nq, q.heads · v.dim]; weights as attention(). q, k, v may share src (also the same
// Var). Score functions without parameters only (dot, scaled_dot, cosine); bias and
// key_lengths as attention(). f32 runs the fused path; f64 (gradient checks) composes
// slice / reshape / transpose / attention, the definition above.
AttentionResult packed_attention(const PackedHeads& q, const PackedHeads& k, const PackedHeads& v,
                                 const AttentionInputs& extras, const AttentionOptions& opts);

}  // namespace attn::ag
