// Multi-head attention on packed projections: forward and backward side by side, both
// delegating to attention/ with strided head views (no split / merge copies).
#include "attn/autograd/packed_attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "attn/autograd/shape_ops.h"
#include "autograd/op_util.h"

namespace attn::ag {

namespace {

const char* const kOp = "packed_attention";

void check_heads(const char* name, const PackedHeads& p) {
  ATTN_CHECK(p.src.defined(), kOp, ": ", name, ".src is undefined");
  ATTN_CHECK(p.src.dim() == 3, kOp, ": ", name, ".src must be [B, N, W], got ", shape_str(p.src.shape()));
  const int64_t W = p.src.size(2);
  ATTN_CHECK(p.heads >= 1 && p.dim >= 1 && p.col >= 0 && p.col + p.heads * p.dim <= W, kOp, ": ", name,
             " heads ", p.heads, " x dim ", p.dim, " at column ", p.col, " do not fit src ",
             shape_str(p.src.shape()));
  ATTN_CHECK(p.col % p.dim == 0 && W % p.dim == 0, kOp, ": ", name, " column ", p.col, " and width ", W,
             " of src ", shape_str(p.src.shape()), " must be multiples of the head dim ", p.dim);
}

// src [B, N, W] (contiguous) -> heads [B, H, N, D], a strided view (last dim contiguous).
Tensor heads_view(const Tensor& src, const PackedHeads& p) {
  const int64_t B = src.size(0), N = src.size(1), W = src.size(2);
  return src.view({B, N, W / p.dim, p.dim}).slice(2, p.col / p.dim, p.col / p.dim + p.heads).transpose(1, 2);
}

// Heads of one part of a gradient: g [B, H, N, D] (contiguous) for columns [col, col + H·D).
struct GradPart {
  const float* g;
  int64_t col, H, D;
};

// dst[b, n, col + h·D + d] (+)= g[b, h, n, d] for every part; dst [B, N, W] contiguous. Row by
// row of dst, so that each dst row is written in one sweep.
void scatter_heads(float* dst, int64_t B, int64_t N, int64_t W, const std::vector<GradPart>& parts, bool acc) {
#pragma omp parallel for schedule(static) if (B * N * W >= detail::kParallelMin)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (const GradPart& p : parts)
        for (int64_t h = 0; h < p.H; ++h) {
          float* d = dst + (b * N + n) * W + p.col + h * p.D;
          const float* s = p.g + ((b * p.H + h) * N + n) * p.D;
          if (acc)
            for (int64_t j = 0; j < p.D; ++j) d[j] += s[j];
          else
            std::memcpy(d, s, sizeof(float) * static_cast<size_t>(p.D));
        }
}

// The definition, composed of primitive ops (f64 gradient checks).
AttentionResult composed(const PackedHeads& q, const PackedHeads& k, const PackedHeads& v,
                         const AttentionInputs& extras, const AttentionOptions& opts) {
  auto split = [](const PackedHeads& p) {
    const int64_t B = p.src.size(0), N = p.src.size(1);
    return transpose(reshape(slice(p.src, 2, p.col, p.col + p.heads * p.dim), {B, N, p.heads, p.dim}), 1, 2);
  };
  AttentionResult r = attention(split(q), split(k), split(v), extras, opts);
  const int64_t B = q.src.size(0), Nq = q.src.size(1);
  r.out = reshape(transpose(r.out, 1, 2), {B, Nq, q.heads * v.dim});
  return r;
}

}  // namespace

AttentionResult packed_attention(const PackedHeads& q, const PackedHeads& k, const PackedHeads& v,
                                 const AttentionInputs& extras, const AttentionOptions& opts) {
  check_heads("q", q);
  check_heads("k", k);
  check_heads("v", v);
  ATTN_CHECK(!extras.w.defined() && !extras.wq.defined() && !extras.wk.defined() && !extras.va.defined(), kOp,
             ": score functions with parameters (general, additive) are not supported; use attention()");
  detail::check_same_dtype(kOp, q.src, k.src);
  detail::check_same_dtype(kOp, q.src, v.src);
  ATTN_CHECK(k.src.size(0) == q.src.size(0) && v.src.size(0) == q.src.size(0) && k.src.size(1) == v.src.size(1), kOp,
             ": src shapes q ", shape_str(q.src.shape()), ", k ", shape_str(k.src.shape()), ", v ",
             shape_str(v.src.shape()), " differ in batch or key length");
  if (q.src.dtype() != DType::f32) return composed(q, k, v, extras, opts);

  const Tensor qs = detail::contiguous(q.src.value()), ks = detail::contiguous(k.src.value()),
               vs = detail::contiguous(v.src.value());
  const Tensor qh = heads_view(qs, q), kh = heads_view(ks, k), vh = heads_view(vs, v);
  AttentionExtras ex;
  if (extras.bias.defined()) ex.bias = extras.bias.value().contiguous();
  ex.key_lengths = extras.key_lengths;
  AttentionOutput fwd = attention_forward(qh, kh, vh, ex, opts);
  const int64_t B = q.src.size(0), Nq = q.src.size(1), H = q.heads, Dv = v.dim;
  // fwd.out [B, H, Nq, Dv] -> out [B, Nq, H·Dv]
  Tensor out = Tensor::empty({B, Nq, H * Dv});
  out.view({B, Nq, H, Dv}).transpose(1, 2).copy_from(fwd.out);
  AttentionResult res;
  res.weights = fwd.weights;
  fwd.weights = Tensor();  // the backward recomputes scores; do not keep [B, H, Nq, Nk] alive
  const PackedHeads parts[3] = {{Var(), q.col, q.heads, q.dim}, {Var(), k.col, k.heads, k.dim},
                                {Var(), v.col, v.heads, v.dim}};
  std::vector<PackedHeads> pv(parts, parts + 3);
  res.out = detail::make_result(
      out, kOp, {&q.src, &k.src, &v.src, &extras.bias}, [qh, kh, vh, ex, opts, fwd, pv, B, Nq, H, Dv](Node& self) {
        // out = merge(attention(split(q), split(k), split(v)));
        // d(split(q), split(k), split(v)) = attention_backward(..., split(dout)), scattered
        // back into the columns of each src.
        const Tensor dout = self.grad.view({B, Nq, H, Dv}).transpose(1, 2);
        AttentionGrads g = attention_backward(qh, kh, vh, ex, opts, fwd, dout);
        const Tensor* grads[3] = {&g.dq, &g.dk, &g.dv};
        bool done[3] = {false, false, false};
        for (size_t i = 0; i < 3; ++i) {
          Node* t = detail::grad_target(self, i);
          if (!t || done[i]) continue;
          // Every part of this op that lands in t (q, k, v may share one src).
          std::vector<size_t> mine;
          for (size_t j = i; j < 3; ++j)
            if (self.inputs[j].get() == t) {
              mine.push_back(j);
              done[j] = true;
            }
          bool acc;
          Tensor& dst = detail::grad_buffer(*t, &acc);
          const int64_t W = dst.size(2), N = dst.size(1);
          if (!acc) {
            // A fresh buffer: plain writes suffice when the parts tile [0, W) without overlap.
            std::vector<std::pair<int64_t, int64_t>> ranges;
            for (size_t j : mine) ranges.push_back({pv[j].col, pv[j].col + pv[j].heads * pv[j].dim});
            std::sort(ranges.begin(), ranges.end());
            int64_t end = 0;
            bool tiles = true;
            for (const auto& [a, b] : ranges) {
              tiles = tiles && a == end;
              end = b;
            }
            tiles = tiles && end == W;
            if (!tiles) detail::zero(dst);
            acc = !tiles;
          }
          std::vector<GradPart> gp;
          for (size_t j : mine) gp.push_back({grads[j]->data<float>(), pv[j].col, pv[j].heads, pv[j].dim});
          scatter_heads(dst.data<float>(), B, N, W, gp, acc);
        }
        if (Node* t = detail::grad_target(self, 3))
          if (g.dbias.defined()) detail::accumulate(*t, g.dbias.reshape(t->value.shape()).contiguous());
      });
  return res;
}

}  // namespace attn::ag
