// Fused backward of the `general` score s = (q W)·k (Luong et al. 2015): project q' = q W
// exactly as the forward did, run the fused dot backward on (q', k, v, lse), then chain dq'
// through the projection with two GEMMs.
#include <algorithm>
#include <cstring>
#include <vector>

#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/flash_attention_backward.h"
#include "attn/kernels/cpu/gemm.h"

namespace attn::cpu {

void general_attention_backward(const kernels::AttentionProblem& p, const float* w,
                                const float* q, const float* k, const float* v, const float* out,
                                const float* lse, const float* dout, float* dq, float* dk,
                                float* dv, float* dw, float* dbias) {
  const int64_t D = p.D, Dk = p.Dk, rows = p.B * p.Hq * p.Nq;
  // q' = q W: the same call as the forward (flash_attention_forward_general), so the scores
  // recomputed here are the forward's to the last bit.
  std::vector<float> qp(static_cast<size_t>(rows * Dk)), dqp(static_cast<size_t>(rows * Dk));
  project_queries(p, q, w, qp.data());
  kernels::AttentionProblem pp = p;
  pp.D = Dk;
  pp.q_stride[0] = p.Hq * p.Nq * Dk, pp.q_stride[1] = p.Nq * Dk, pp.q_stride[2] = Dk;
  flash_attention_backward(pp, qp.data(), k, v, out, lse, dout, dqp.data(), dk, dv, dbias);
  if (rows == 0) {
    std::fill(dw, dw + D * Dk, 0.f);
    return;
  }

  // s_ij = q'_i·k_j with q'_i = q_i W, so dq_i = dq'_i Wᵀ and dW = Σ_i q_iᵀ dq'_i = Qᵀ dQ'.
  sgemm(false, true, rows, D, Dk, 1.f, dqp.data(), Dk, w, Dk, 0.f, dq, D);
  // Qᵀ dQ' wants Q as one [rows, D] matrix: a strided q is gathered (one GEMM over all rows
  // gives the same sum whatever q's layout).
  const bool dense = p.q_stride[2] == D && p.q_stride[1] == p.Nq * D && p.q_stride[0] == p.Hq * p.Nq * D;
  std::vector<float> qd;
  const float* qm = q;
  if (!dense) {
    qd.resize(static_cast<size_t>(rows * D));
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.Hq; ++h)
        for (int64_t i = 0; i < p.Nq; ++i)
          std::memcpy(qd.data() + ((b * p.Hq + h) * p.Nq + i) * D,
                      q + b * p.q_stride[0] + h * p.q_stride[1] + i * p.q_stride[2], sizeof(float) * D);
    qm = qd.data();
  }
  sgemm(true, false, D, Dk, rows, 1.f, qm, D, dqp.data(), Dk, 0.f, dw, Dk);
}

}  // namespace attn::cpu
