// Element-wise training kernels on raw f32 pointers (Highway SIMD, chosen once per process):
// dropout with the counter-based hash of attn/core/rng.h, ReLU forward/backward, layer norm
// and the Adam update. Each
// works on the range the caller hands it (no threads inside); callers split big tensors over
// OpenMP threads. Results are bit-identical to the scalar formulas in the comments.
#pragma once

#include <cstdint>

namespace attn::cpu {

// Dropout of elements [0, n) whose counters are offset .. offset + n - 1:
//   keep[i] = counter_uniform(seed, offset + i) >= p   (exactly the scalar decision)
//   y[i] = keep[i] ? x[i] * scale : 0
// keep is one byte (0 or 1) per element.
void dropout_forward(const float* x, float* y, uint8_t* keep, int64_t n, uint64_t seed, uint64_t offset,
                     double p, float scale);
// dx[i] (+)= keep[i] ? dy[i] * scale : 0  (added when accumulate).
void dropout_backward(const float* dy, const uint8_t* keep, float* dx, int64_t n, float scale, bool accumulate);

// The residual add after dropout, one pass: keep as dropout_forward,
//   y[i] = res[i] + x[i] * (keep[i] * scale)
// (the same floats as dropout_forward then res + y). Backward: dropout_backward.
void dropout_add_forward(const float* res, const float* x, float* y, uint8_t* keep, int64_t n, uint64_t seed,
                         uint64_t offset, double p, float scale);

// ReLU then dropout, one pass, no mask stored: keep as dropout_forward,
//   y[i] = (x[i] > 0 ? x[i] : 0) * (keep[i] * scale)
// (the same floats as relu_forward then dropout_forward). y may be x (in place).
void relu_dropout_forward(const float* x, float* y, int64_t n, uint64_t seed, uint64_t offset, double p,
                          float scale);
// dx (+)= dy * (y > 0 ? scale : 0), from the forward's output (y > 0 exactly where x > 0 and
// the element was kept; the same floats as dropout_backward then relu_backward).
void relu_dropout_backward(const float* y, const float* dy, float* dx, int64_t n, float scale, bool accumulate);

// relu_dropout_backward fused with the bias gradient of the linear layer before it, over
// columns [0, cols) of rows of stride ld (columns may be split over threads):
//   dz[r, j] = dy[r, j] * (y[r, j] > 0 ? scale : 0);  db[j] (+)= sum_r dz[r, j] (rows in order)
// dz may be dy (in place).
void relu_dropout_backward_bias(const float* y, const float* dy, float* dz, float* db, int64_t ld, int64_t rows,
                                int64_t cols, float scale, bool accumulate);

// dst[j] (+)= sum_r src[r, j] over src [rows, cols] with row stride ld, rows added in order
// (bias gradients; a caller may split the columns over threads: the sums do not change).
void sum_rows(const float* src, int64_t ld, float* dst, int64_t rows, int64_t cols, bool accumulate);

// y = x > 0 ? x : 0
void relu_forward(const float* x, float* y, int64_t n);
// dx (+)= y > 0 ? dy : 0, from the forward's output y (y > 0 exactly where x > 0).
void relu_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate);

// Layer norm over the last dim of x: [rows, E] (Ba et al. 2016), statistics in double:
//   mu = mean(x), rstd = 1 / sqrt(var(x) + eps), y = (x - mu) rstd w + b  (w, b may be null)
// stats[2 r] = mu, stats[2 r + 1] = rstd of row r.
void layer_norm_forward(const float* x, const float* w, const float* b, float* y, double* stats, int64_t rows,
                        int64_t E, double eps);
// dx (+)= rstd (dxh - mean(dxh) - xh mean(dxh xh)), xh = (x - mu) rstd, dxh = dy w (w may be null).
void layer_norm_backward_dx(const float* x, const float* w, const float* dy, const double* stats, float* dx,
                            int64_t rows, int64_t E, bool accumulate);

// Layer norm parameter gradients over columns [0, E) of x, dy (row stride ld), rows added in
// order (dw or db may be null; columns may be split over threads):
//   dw[j] += float(dy[r, j] * xh[r, j]) with xh = (x - mu) rstd in double;  db[j] += dy[r, j]
void layer_norm_backward_wb(const float* x, const float* dy, int64_t ld, const double* stats, float* dw, float* db,
                            int64_t rows, int64_t E);

// Scalars of one Adam / AdamW step (torch 1.13 _single_tensor_adam: scalars computed in
// double by the caller, tensor arithmetic in float).
struct AdamStepScalars {
  float beta1, beta2;    // b1, b2
  float one_minus_beta1, one_minus_beta2;
  float eps;
  float weight_decay;    // Adam: g += wd * p
  float decay;           // AdamW: p *= 1 - lr * wd
  float step_size;       // lr / (1 - b1^t)
  float bc2_sqrt;        // sqrt(1 - b2^t)
  bool decoupled;        // AdamW
};
// For j < n:  g = grad[j] (+ wd p[j] for Adam);  p[j] *= decay (AdamW);
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  p -= step_size m / (sqrt(v) / bc2_sqrt + eps)
void adam_update(float* p, const float* grad, float* m, float* v, int64_t n, const AdamStepScalars& s);

}  // namespace attn::cpu
