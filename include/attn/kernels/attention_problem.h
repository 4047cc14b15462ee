// The kernel-level description of one attention call: sizes, strides, scaling and masks on
// raw pointers. Built and validated by attention/ from Tensors; read by the reference
// (kernels/ref) and the fused CPU kernels (kernels/cpu), which know nothing of Tensor.
//
//   q: [B, Hq, Nq, D]   k: [B, Hkv, Nk, Dk]   v: [B, Hkv, Nk, Dv]   out: [B, Hq, Nq, Dv]
// The last dimension of q, k, v and out is contiguous; the others are given by strides
// (in elements). lse is [B, Hq, Nq] contiguous; weights, when asked, [B, Hq, Nq, Nk] contiguous.
#pragma once

#include <cstdint>

namespace attn::kernels {

struct AttentionProblem {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 0, Nk = 0, D = 0, Dk = 0, Dv = 0;
  int64_t q_stride[3] = {0, 0, 0};  // batch, head, row
  int64_t k_stride[3] = {0, 0, 0};
  int64_t v_stride[3] = {0, 0, 0};
  int64_t o_stride[3] = {0, 0, 0};

  // Multiplier of the raw score: scaled_dot -> its scale; dot -> 1; cosine -> 1/temperature
  // (applied to the cosine); general / additive -> 1.
  double scale = 1.0;

  bool causal = false;
  int64_t query_offset = 0;  // p_i = i + query_offset
  bool has_window = false;
  int64_t window_left = 0, window_right = 0;
  const int32_t* key_lengths = nullptr;  // [B] or null
  const float* bias = nullptr;           // element (b, h, i, j) at b*s0 + h*s1 + i*s2 + j*s3
  int64_t bias_stride[4] = {0, 0, 0, 0};  // 0 along broadcast dimensions

  double dropout = 0.0;  // rate; keep decision from attn::dropout_keep (core/rng.h)
  uint64_t seed = 0;

  int64_t group() const { return Hq / Hkv; }
  int64_t kv_head(int64_t h) const { return h / group(); }

  // Structural visibility (causal, window, key lengths) of key j for query row i of batch b.
  // The bias may still add -inf.
  bool visible(int64_t b, int64_t i, int64_t j) const {
    const int64_t p = i + query_offset;
    if (causal && j > p) return false;
    if (has_window && (j < p - window_left || j > p + window_right)) return false;
    if (key_lengths && j >= key_lengths[b]) return false;
    return true;
  }
  float bias_at(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return bias ? bias[b * bias_stride[0] + h * bias_stride[1] + i * bias_stride[2] + j * bias_stride[3]]
                : 0.f;
  }
};

}  // namespace attn::kernels
