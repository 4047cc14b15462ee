// Fused backward of the cosine score s = cos(q, k) / T: normalise q and k, run the fused dot
// backward on q̂, k̂ with scale 1/T, then chain dq̂, dk̂ through the normalisation.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention_backward.h"

namespace attn::cpu {

namespace {

// x̂ = x / |x| (a zero row stays 0: the reference's "no direction, score 0"); returns |x|.
double normalise_row(const float* x, int64_t D, float* xh) {
  double ss = 0;
  for (int64_t d = 0; d < D; ++d) ss += double(x[d]) * x[d];
  const double n = std::sqrt(ss);
  const double inv = n > 0 ? 1.0 / n : 0.0;
  for (int64_t d = 0; d < D; ++d) xh[d] = static_cast<float>(x[d] * inv);
  return n;
}

// dx = (dx̂ − x̂ (x̂·dx̂)) / |x| in place (d x̂/dx = (I − x̂ x̂ᵀ) / |x|); 0 for a zero row, whose
// score is the constant 0. Returns x̂·dx̂ (for dT).
double chain_row(const float* xh, double n, int64_t D, float* g) {
  double dot = 0;
  for (int64_t d = 0; d < D; ++d) dot += double(xh[d]) * g[d];
  if (!(n > 0)) {
    std::fill(g, g + D, 0.f);
    return 0.0;
  }
  for (int64_t d = 0; d < D; ++d) g[d] = static_cast<float>((g[d] - xh[d] * dot) / n);
  return dot;
}

}  // namespace

void cosine_attention_backward(const kernels::AttentionProblem& p, double temperature,
                               const float* q, const float* k, const float* v, const float* out,
                               const float* lse, const float* dout, float* dq, float* dk, float* dv,
                               float* dbias, double* dtemperature) {
  const int64_t D = p.D, q_rows = p.B * p.Hq * p.Nq, k_rows = p.B * p.Hkv * p.Nk;
  std::vector<float> qh(static_cast<size_t>(q_rows * D)), kh(static_cast<size_t>(k_rows * D));
  std::vector<double> qn(static_cast<size_t>(q_rows)), kn(static_cast<size_t>(k_rows));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < q_rows; ++r) {
    const int64_t i = r % p.Nq, h = r / p.Nq % p.Hq, b = r / (p.Nq * p.Hq);
    qn[r] = normalise_row(q + b * p.q_stride[0] + h * p.q_stride[1] + i * p.q_stride[2], D,
                          qh.data() + r * D);
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < k_rows; ++r) {
    const int64_t j = r % p.Nk, g = r / p.Nk % p.Hkv, b = r / (p.Nk * p.Hkv);
    kn[r] = normalise_row(k + b * p.k_stride[0] + g * p.k_stride[1] + j * p.k_stride[2], D,
                          kh.data() + r * D);
  }

  // s = (q̂·k̂) · scale with scale = 1/T: the dot backward on the contiguous q̂, k̂.
  kernels::AttentionProblem pn = p;
  pn.scale = 1.0 / temperature;
  pn.q_stride[0] = p.Hq * p.Nq * D, pn.q_stride[1] = p.Nq * D, pn.q_stride[2] = D;
  pn.k_stride[0] = p.Hkv * p.Nk * D, pn.k_stride[1] = p.Nk * D, pn.k_stride[2] = D;
  flash_attention_backward(pn, qh.data(), kh.data(), v, out, lse, dout, dq, dk, dv, dbias);

  // dT = Σ_ij dS_ij · ∂s_ij/∂T = −Σ_ij dS_ij c_ij / T², and dq̂_i = (1/T) Σ_j dS_ij k̂_j gives
  // Σ_ij dS_ij c_ij = T Σ_i q̂_i·dq̂_i, so dT = −(1/T) Σ_i q̂_i·dq̂_i.
  double qdot = 0;
#pragma omp parallel for schedule(static) reduction(+ : qdot)
  for (int64_t r = 0; r < q_rows; ++r) qdot += chain_row(qh.data() + r * D, qn[r], D, dq + r * D);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < k_rows; ++r) chain_row(kh.data() + r * D, kn[r], D, dk + r * D);
  if (dtemperature) *dtemperature = -qdot / temperature;
}

}  // namespace attn::cpu
