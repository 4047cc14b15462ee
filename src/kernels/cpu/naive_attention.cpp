#include "attn/kernels/cpu/naive_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attn/core/error.h"
#include "attn/kernels/cpu/gemm.h"

namespace attn::cpu {

namespace {

void check_supported(const kernels::AttentionProblem& p, const char* op) {
  ATTN_CHECK(!p.has_window && p.key_lengths == nullptr && p.bias == nullptr && p.dropout == 0.0 &&
                 p.Dk == p.D,
             op, ": the naive kernel supports dot / scaled_dot with the causal mask only");
}

// S = q kᵀ · scale for head (b, h), hidden entries −inf: [Nq, Nk].
void scores(const kernels::AttentionProblem& p, const float* q, const float* k, int64_t b, int64_t h,
            float* s) {
  const int64_t g = p.kv_head(h);
  sgemm(false, true, p.Nq, p.Nk, p.D, static_cast<float>(p.scale),
        q + b * p.q_stride[0] + h * p.q_stride[1], p.q_stride[2],
        k + b * p.k_stride[0] + g * p.k_stride[1], p.k_stride[2], 0.f, s, p.Nk);
  if (p.causal) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < p.Nq; ++i)
      for (int64_t j = std::max<int64_t>(0, i + p.query_offset + 1); j < p.Nk; ++j)
        s[i * p.Nk + j] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace

void naive_attention_forward(const kernels::AttentionProblem& p, const float* q, const float* k,
                             const float* v, float* out, float* lse) {
  check_supported(p, "naive_attention_forward");
  std::vector<float> s(static_cast<size_t>(p.Nq * p.Nk));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h) {
      scores(p, q, k, b, h, s.data());
      float* lse_bh = lse + (b * p.Hq + h) * p.Nq;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < p.Nq; ++i) {
        float* r = s.data() + i * p.Nk;
        const float m = *std::max_element(r, r + p.Nk);
        if (m == -std::numeric_limits<float>::infinity()) {
          std::fill(r, r + p.Nk, 0.f);
          lse_bh[i] = m;
          continue;
        }
        float sum = 0.f;
        for (int64_t j = 0; j < p.Nk; ++j) sum += (r[j] = std::exp(r[j] - m));
        for (int64_t j = 0; j < p.Nk; ++j) r[j] /= sum;
        lse_bh[i] = m + std::log(sum);
      }
      const int64_t g = p.kv_head(h);
      sgemm(false, false, p.Nq, p.Dv, p.Nk, 1.f, s.data(), p.Nk,
            v + b * p.v_stride[0] + g * p.v_stride[1], p.v_stride[2], 0.f,
            out + b * p.o_stride[0] + h * p.o_stride[1], p.o_stride[2]);
    }
}

void naive_attention_backward(const kernels::AttentionProblem& p, const float* q, const float* k,
                              const float* v, const float* out, const float* lse,
                              const float* dout, float* dq, float* dk, float* dv) {
  check_supported(p, "naive_attention_backward");
  const int64_t Nq = p.Nq, Nk = p.Nk, D = p.D, Dv = p.Dv;
  std::vector<float> s(static_cast<size_t>(Nq * Nk)), dp(static_cast<size_t>(Nq * Nk));
  const float scale = static_cast<float>(p.scale);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h) {
      const int64_t g = p.kv_head(h), bh = b * p.Hq + h, bg = b * p.Hkv + g;
      const bool first_of_group = h % p.group() == 0;
      const float* q_bh = q + b * p.q_stride[0] + h * p.q_stride[1];
      const float* k_bg = k + b * p.k_stride[0] + g * p.k_stride[1];
      const float* v_bg = v + b * p.v_stride[0] + g * p.v_stride[1];
      const float* o_bh = out + b * p.o_stride[0] + h * p.o_stride[1];
      const float* do_bh = dout + bh * Nq * Dv;
      scores(p, q, k, b, h, s.data());
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < Nq; ++i) {
        const float l = lse[bh * Nq + i];
        float* r = s.data() + i * Nk;
        for (int64_t j = 0; j < Nk; ++j) r[j] = l == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(r[j] - l);
      }
      // dV (+)= Pᵀ dO; dP = dO Vᵀ.
      sgemm(true, false, Nk, Dv, Nq, 1.f, s.data(), Nk, do_bh, Dv, first_of_group ? 0.f : 1.f,
            dv + bg * Nk * Dv, Dv);
      sgemm(false, true, Nq, Nk, Dv, 1.f, do_bh, Dv, v_bg, p.v_stride[2], 0.f, dp.data(), Nk);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < Nq; ++i) {
        float delta = 0.f;
        for (int64_t c = 0; c < Dv; ++c) delta += o_bh[i * p.o_stride[2] + c] * do_bh[i * Dv + c];
        for (int64_t j = 0; j < Nk; ++j) dp[i * Nk + j] = s[i * Nk + j] * (dp[i * Nk + j] - delta);
      }
      // dQ = dS K · scale; dK (+)= dSᵀ Q · scale.
      sgemm(false, false, Nq, D, Nk, scale, dp.data(), Nk, k_bg, p.k_stride[2], 0.f, dq + bh * Nq * D, D);
      sgemm(true, false, Nk, D, Nq, scale, dp.data(), Nk, q_bh, p.q_stride[2],
            first_of_group ? 0.f : 1.f, dk + bg * Nk * D, D);
    }
}

}  // namespace attn::cpu
