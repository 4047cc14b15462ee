#include "attention/attention_backend.h"

#include "attn/core/error.h"

namespace attn::detail {

// Fused CPU kernels plug in here: `automatic` should take the fused kernel when it supports
// the problem (score function, masks, dropout, weights) and fall back to the reference.
void run_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                 const float* k, const float* v, float* out, float* lse, float* weights,
                 AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
    case AttentionBackend::reference:
      ref::attention_forward(p, s, q, k, v, out, lse, weights);
      return;
    case AttentionBackend::fused:
      fail("attention: the fused backend is not built yet; use backend automatic or reference");
  }
}

// Fused CPU kernels plug in here (backward), as in run_forward.
void run_backward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                  const float* k, const float* v, const float* out, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                  float* dwk, float* dva, float* dbias, double* dtemperature,
                  AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
    case AttentionBackend::reference:
      ref::attention_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias,
                              dtemperature);
      return;
    case AttentionBackend::fused:
      fail("attention: the fused backend is not built yet; use backend automatic or reference");
  }
}

}  // namespace attn::detail
