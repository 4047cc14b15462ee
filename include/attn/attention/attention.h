// The public attention API: similarity scores, masked softmax weights, weighted sum of values,
// forward and backward, for every score function and mask.
//
//   q: [B, Hq, Nq, D]    k: [B, Hkv, Nk, Dk]    v: [B, Hkv, Nk, Dv]
//   out: [B, Hq, Nq, Dv] lse: [B, Hq, Nq]       weights (on request): [B, Hq, Nq, Nk]
//
// 2-D [N, D] and 3-D [H, N, D] inputs are accepted as B = H = 1 / B = 1; outputs and
// gradients then have the same rank as the inputs (out [Nq, Dv], lse [Nq], ...).
// Hq must be a multiple of Hkv: query head h reads key/value head h / (Hq / Hkv)
// (grouped-query attention; Hkv = 1 is multi-query), as PyTorch's enable_gqa.
// Dk == D except for the `general` and `additive` score functions.
//
// Score functions s(q_i, k_j):
//   dot         q·k
//   scaled_dot  q·k · scale                  (scale defaults to 1/sqrt(D))
//   cosine      cos(q, k) / temperature       (a zero row gives score 0, never NaN)
//   general     qᵀ W k,            W [D, Dk]                      (Luong et al. 2015)
//   additive    vₐᵀ tanh(W_q q + W_k k), W_q [A, D], W_k [A, Dk], vₐ [A] (Bahdanau et al. 2015)
//
// Masks combine (all must allow a key for it to be visible). With p_i = i + query_offset:
//   causal        key j visible when j <= p_i (offset 0 = PyTorch is_causal; Nk - Nq = the
//                 bottom-right alignment of decoding with a cache)
//   window (L,R)  key j visible when p_i - L <= j <= p_i + R (L, R >= 0; INT64_MAX = unbounded)
//   key_lengths   [B] (i32): key j of batch b visible when j < key_lengths[b]
//   bias          additive, broadcastable from [B|1, Hq|1, Nq, Nk] (2-D [Nq, Nk] also
//                 accepted), added to the scores after scaling; -inf hides a key
// A query row with no visible key gives out = 0, lse = -inf and weights 0, never NaN.
//
// Sizes: every dimension of q, k and v must be at least 1; empty inputs (N = 0, D = 0, ...)
// are rejected with attn::Error rather than given a made-up meaning.
//
// Non-finite inputs: with check_finite, NaN / Inf in q, k, v (and parameters, dout) throw
// attn::Error naming the tensor and the first bad index. Without it they are not looked for and
// the result is unspecified: no crash and no exception, outputs of the documented shapes, but
// NaN may reach rows that cannot see the bad element (fused kernels) or be skipped (reference).
//
// Dropout (rate p) zeroes weights after the softmax with a counter-based RNG keyed on
// (seed, b, h, i, j) and scales the kept ones by 1/(1-p); the same seed gives the same mask
// on every path and thread count. lse is that of the undropped scores.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "attn/core/tensor.h"

namespace attn {

enum class ScoreFn { dot, scaled_dot, cosine, general, additive };

// "dot", "scaled_dot", "cosine", "general", "additive"; throws attn::Error otherwise.
ScoreFn parse_score_fn(std::string_view name);
const char* score_fn_name(ScoreFn s);

// Which implementation runs. `automatic` takes the fused CPU kernel when it supports the
// request and the reference otherwise; `reference` forces the double-precision oracle.
enum class AttentionBackend { automatic, reference, fused };

struct Window {
  int64_t left = 0;
  int64_t right = 0;
};

struct AttentionOptions {
  ScoreFn score = ScoreFn::scaled_dot;
  std::optional<double> scale;  // scaled_dot only; default 1/sqrt(D)
  double temperature = 1.0;     // cosine only; must be > 0
  bool causal = false;
  int64_t query_offset = 0;     // p_i = i + query_offset, for causal and window
  std::optional<Window> window;
  double dropout = 0.0;         // in [0, 1)
  uint64_t seed = 0;
  bool need_weights = false;    // also return weights [B, Hq, Nq, Nk]
  bool check_finite = false;    // throw attn::Error if q, k, v (or bias) hold NaN or Inf
  AttentionBackend backend = AttentionBackend::automatic;
};

// Optional tensors; an undefined Tensor means "absent".
struct AttentionExtras {
  Tensor w;            // general:  [D, Dk]
  Tensor wq;           // additive: [A, D]
  Tensor wk;           // additive: [A, Dk]
  Tensor va;           // additive: [A]
  Tensor key_lengths;  // [B], i32
  Tensor bias;         // [B|1, Hq|1, Nq, Nk] or [Nq, Nk], f32
};

struct AttentionOutput {
  Tensor out;      // [B, Hq, Nq, Dv]
  Tensor lse;      // [B, Hq, Nq]; -inf for rows with no visible key
  Tensor weights;  // [B, Hq, Nq, Nk] when need_weights, else undefined
};

struct AttentionGrads {
  Tensor dq, dk, dv;        // shapes of q, k, v
  Tensor dw;                // general
  Tensor dwq, dwk, dva;     // additive
  Tensor dbias;             // shape of the bias given (broadcast dims summed)
  double dtemperature = 0;  // cosine
};

// Validates every argument (throws attn::Error naming the argument and shapes) and runs the
// forward pass. q, k, v (and w, wq, wk, va, bias) may be f32 or bf16 and any strides. bf16
// q, k, v with a dot / scaled_dot (or cosine) score, no weights asked and a backend other than
// reference go to the bf16 kernel as they are (bf16 products, f32 sums); any other bf16 is
// converted to f32. Outputs are f32. Views whose last dimension is contiguous are read in
// place; others are copied. Besides shapes and dtypes, attn::Error is thrown for: a score
// parameter given that the score function does not use (or missing when it does); `scale`
// set with a score other than scaled_dot, or not finite; temperature <= 0 or not finite;
// dropout outside [0, 1); a negative window side; |query_offset| > 2^62; key_lengths
// outside [0, Nk]; a bias holding NaN or +inf (always checked; -inf is a mask); NaN / Inf in
// q, k, v, w, wq, wk, va (and dout) when check_finite is set.
AttentionOutput attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionExtras& extras, const AttentionOptions& opts);

// Gradients of sum(dout * out) with respect to every input, given the forward's output
// (fwd.out and fwd.lse are used; the scores are recomputed). dout: shape of fwd.out.
// Gradients are f32, contiguous, with the shapes of the inputs. The same options (seed
// included) must be passed as to the forward.
AttentionGrads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionExtras& extras, const AttentionOptions& opts,
                                  const AttentionOutput& fwd, const Tensor& dout);

}  // namespace attn
