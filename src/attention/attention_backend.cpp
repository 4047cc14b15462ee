#include "attention/attention_backend.h"

#include "attn/core/error.h"
#include "attn/kernels/cpu/additive_attention.h"
#include "attn/kernels/cpu/flash_attention_backward.h"

namespace attn::detail {

namespace {

// The fused backward kernels: dot / scaled_dot (flash) and additive; cosine and general stay
// on the reference. Returns false when neither applies.
bool fused_backward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                    const float* k, const float* v, const float* out, const float* lse,
                    const float* dout, float* dq, float* dk, float* dv, float* dwq, float* dwk,
                    float* dva, float* dbias) {
  if ((s.fn == ScoreFn::dot || s.fn == ScoreFn::scaled_dot) && cpu::flash_attention_backward_supports(p)) {
    cpu::flash_attention_backward(p, q, k, v, out, lse, dout, dq, dk, dv, dbias);
    return true;
  }
  if (s.fn == ScoreFn::additive && dwq && dwk && dva) {
    cpu::additive_attention_backward(p, {s.wq, s.wk, s.va, s.A}, q, k, v, out, lse, dout, dq, dk,
                                     dv, dwq, dwk, dva, dbias);
    return true;
  }
  return false;
}

}  // namespace

// Fused CPU kernels plug in here: `automatic` should take the fused kernel when it supports
// the problem (score function, masks, dropout, weights) and fall back to the reference.
void run_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                 const float* k, const float* v, float* out, float* lse, float* weights,
                 AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
      if (s.fn == ScoreFn::additive && weights == nullptr) {
        cpu::additive_attention_forward(p, {s.wq, s.wk, s.va, s.A}, q, k, v, out, lse);
        return;
      }
      [[fallthrough]];
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
      if (fused_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dwq, dwk, dva, dbias)) return;
      [[fallthrough]];
    case AttentionBackend::reference:
      ref::attention_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias,
                              dtemperature);
      return;
    case AttentionBackend::fused:
      if (fused_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dwq, dwk, dva, dbias)) return;
      fail("attention backward: the fused backend supports the dot, scaled_dot and additive "
           "scores; got ", score_fn_name(s.fn), "; use backend automatic or reference");
  }
}

}  // namespace attn::detail
