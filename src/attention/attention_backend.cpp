#include "attention/attention_backend.h"

#include <vector>

#include "attn/core/error.h"
#include "attn/kernels/cpu/flash_attention.h"

namespace attn::detail {

namespace {

// The fused forward (kernels/cpu/flash_attention.h) serves dot, scaled_dot, cosine and general
// with every mask, dropout and GQA; weights are recomputed from its lse.
bool fused_forward_supports(const kernels::AttentionProblem& p, const ref::ScoreParams& s) {
  switch (s.fn) {
    case ScoreFn::dot:
    case ScoreFn::scaled_dot:
    case ScoreFn::cosine: return p.Dk == p.D;
    case ScoreFn::general: return s.w != nullptr;
    case ScoreFn::additive: return false;
  }
  return false;
}

void fused_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                   const float* k, const float* v, float* out, float* lse, float* weights) {
  std::vector<float> lse_buf;
  if (!lse && weights) {
    lse_buf.resize(static_cast<size_t>(p.B * p.Hq * p.Nq));
    lse = lse_buf.data();
  }
  if (s.fn == ScoreFn::general) {  // q' = q W, then the dot kernel on q'
    kernels::AttentionProblem pp = p;
    std::vector<float> qp(static_cast<size_t>(p.B * p.Hq * p.Nq * p.Dk));
    cpu::project_queries(p, q, s.w, qp.data());
    pp.D = p.Dk;
    pp.q_stride[0] = p.Hq * p.Nq * p.Dk;
    pp.q_stride[1] = p.Nq * p.Dk;
    pp.q_stride[2] = p.Dk;
    cpu::flash_attention_forward(pp, qp.data(), k, v, out, lse);
    if (weights) cpu::attention_weights_from_lse(pp, qp.data(), k, lse, 0, p.Nq, weights);
    return;
  }
  kernels::AttentionProblem pc = p;
  cpu::FlashScore score = cpu::FlashScore::dot;
  if (s.fn == ScoreFn::cosine) {
    score = cpu::FlashScore::cosine;
    pc.scale = 1.0 / s.temperature;
  }
  cpu::flash_attention_forward(pc, q, k, v, out, lse, score);
  if (weights) cpu::attention_weights_from_lse(pc, q, k, lse, 0, p.Nq, weights, score);
}

}  // namespace

// Fused CPU kernels plug in here: `automatic` takes the fused kernel when it supports the
// problem and falls back to the reference.
void run_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                 const float* k, const float* v, float* out, float* lse, float* weights,
                 AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
      if (fused_forward_supports(p, s)) {
        fused_forward(p, s, q, k, v, out, lse, weights);
        return;
      }
      ref::attention_forward(p, s, q, k, v, out, lse, weights);
      return;
    case AttentionBackend::reference:
      ref::attention_forward(p, s, q, k, v, out, lse, weights);
      return;
    case AttentionBackend::fused:
      if (!fused_forward_supports(p, s))
        fail("attention: the fused backend does not support score '", score_fn_name(s.fn),
             "'; use backend automatic or reference");
      fused_forward(p, s, q, k, v, out, lse, weights);
      return;
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
