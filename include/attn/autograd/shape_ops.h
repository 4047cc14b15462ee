// Differentiable reshaping, slicing, joining and row gathering.
#pragma once

#include <optional>
#include <vector>

#include "attn/autograd/var.h"

namespace attn::ag {

// One -1 allowed, as Tensor::view. A view of the value when it is contiguous.
Var reshape(const Var& a, const Shape& shape);
// Swaps two dims (the result is a contiguous copy).
Var transpose(const Var& a, int64_t d0, int64_t d1);
// a[..., start:end, ...] along dim.
Var slice(const Var& a, int64_t dim, int64_t start, int64_t end);
// Joins along an existing dim; all other dims equal.
Var concat(const std::vector<Var>& xs, int64_t dim);
// Joins along a new dim inserted at `dim`; all shapes equal.
Var stack(const std::vector<Var>& xs, int64_t dim);
// Pieces of the given sizes along dim (sizes sum to a.size(dim)).
std::vector<Var> split(const Var& a, int64_t dim, const std::vector<int64_t>& sizes);
// Rows of a: a [R, ...], index [n] (i32) -> [n, ...]. Backward scatter-adds (repeats add up).
Var index_select(const Var& a, const Tensor& index);
// Embedding lookup: weight [V, E], ids (i32, any shape) -> [ids..., E]. Rows equal to
// padding_idx receive no gradient (torch.nn.functional.embedding).
Var embedding(const Var& weight, const Tensor& ids, std::optional<int64_t> padding_idx = std::nullopt);

}  // namespace attn::ag
