#include "attention/attention_backend.h"

#include <cmath>
#include <limits>
#include <vector>

#include "attn/core/error.h"
#include "attn/kernels/cpu/additive_attention.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/cpu/flash_attention_backward.h"

namespace attn::detail {

bool cosine_norms_fit_f32(const kernels::AttentionProblem& p, const float* q, const float* k) {
  const double tiny = 1.0 / static_cast<double>(std::numeric_limits<float>::max());
  auto fits = [&](const float* x, const int64_t* st, int64_t H, int64_t N) {
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < N; ++i) {
          const float* r = x + b * st[0] + h * st[1] + i * st[2];
          double s = 0;
          for (int64_t d = 0; d < p.D; ++d) s += double(r[d]) * r[d];
          if (s > 0 && std::sqrt(s) < tiny) return false;
        }
    return true;
  };
  return fits(q, p.q_stride, p.Hq, p.Nq) && fits(k, p.k_stride, p.Hkv, p.Nk);
}

namespace {

// The fused forward kernels: flash (kernels/cpu/flash_attention.h) for dot, scaled_dot,
// cosine and general with every mask, dropout and GQA, weights recomputed in double from the
// row max and sum (attention_weights_from_lse); the blocked additive kernel when no weights
// are asked. Returns false when neither applies.
bool fused_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                   const float* k, const float* v, float* out, float* lse, float* weights) {
  if (s.fn == ScoreFn::additive) {
    if (weights != nullptr) return false;
    cpu::additive_attention_forward(p, {s.wq, s.wk, s.va, s.A}, q, k, v, out, lse);
    return true;
  }
  if (s.fn == ScoreFn::general && s.w == nullptr) return false;
  if (s.fn != ScoreFn::general && p.Dk != p.D) return false;
  // Rows of denormals: the reference normalises them in double (fuzz_attend crash-14700826).
  if (s.fn == ScoreFn::cosine && !cosine_norms_fit_f32(p, q, k)) return false;
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
    return true;
  }
  kernels::AttentionProblem pc = p;
  cpu::FlashScore score = cpu::FlashScore::dot;
  if (s.fn == ScoreFn::cosine) {
    score = cpu::FlashScore::cosine;
    pc.scale = 1.0 / s.temperature;
  }
  cpu::flash_attention_forward(pc, q, k, v, out, lse, score);
  if (weights) cpu::attention_weights_from_lse(pc, q, k, lse, 0, p.Nq, weights, score);
  return true;
}

// The fused backward kernels: dot / scaled_dot, cosine and general (flash; general on the
// projected q' = q W) and additive, every mask and |lse|. Returns false when none applies:
// Dk ≠ D for the dot family, or a score's parameter or gradient buffer missing (neither
// reachable through the public API, which validates both).
bool fused_backward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                    const float* k, const float* v, const float* out, const float* lse,
                    const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                    float* dwk, float* dva, float* dbias, double* dtemperature) {
  if ((s.fn == ScoreFn::dot || s.fn == ScoreFn::scaled_dot) && cpu::flash_attention_backward_supports(p)) {
    cpu::flash_attention_backward(p, q, k, v, out, lse, dout, dq, dk, dv, dbias);
    return true;
  }
  if (s.fn == ScoreFn::cosine && cpu::flash_attention_backward_supports(p)) {
    cpu::cosine_attention_backward(p, s.temperature, q, k, v, out, lse, dout, dq, dk, dv, dbias,
                                   dtemperature);
    return true;
  }
  if (s.fn == ScoreFn::general && s.w && dw && p.Hkv > 0 && p.Hq % p.Hkv == 0) {
    cpu::general_attention_backward(p, s.w, q, k, v, out, lse, dout, dq, dk, dv, dw, dbias);
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

// Fused CPU kernels plug in here: `automatic` takes the fused kernel when it supports the
// problem and falls back to the reference; `fused` insists.
void run_forward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                 const float* k, const float* v, float* out, float* lse, float* weights,
                 AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
      if (fused_forward(p, s, q, k, v, out, lse, weights)) return;
      [[fallthrough]];
    case AttentionBackend::reference:
      ref::attention_forward(p, s, q, k, v, out, lse, weights);
      return;
    case AttentionBackend::fused:
      if (fused_forward(p, s, q, k, v, out, lse, weights)) return;
      fail("attention: the fused backend does not support score '", score_fn_name(s.fn),
           "' with these options; use backend automatic or reference");
  }
}

void run_forward_bf16(const kernels::AttentionProblem& p, const ref::ScoreParams& s,
                      const bf16* q, const bf16* k, const bf16* v, float* out, float* lse) {
  kernels::AttentionProblem pc = p;
  cpu::FlashScore score = cpu::FlashScore::dot;
  if (s.fn == ScoreFn::cosine) {
    score = cpu::FlashScore::cosine;
    pc.scale = 1.0 / s.temperature;
  }
  cpu::flash_attention_forward_bf16(pc, q, k, v, out, lse, score);
}

// Fused CPU kernels plug in here (backward), as in run_forward.
void run_backward(const kernels::AttentionProblem& p, const ref::ScoreParams& s, const float* q,
                  const float* k, const float* v, const float* out, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                  float* dwk, float* dva, float* dbias, double* dtemperature,
                  AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
      if (fused_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias,
                         dtemperature))
        return;
      [[fallthrough]];
    case AttentionBackend::reference:
      ref::attention_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias,
                              dtemperature);
      return;
    case AttentionBackend::fused:
      if (fused_backward(p, s, q, k, v, out, lse, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias,
                         dtemperature))
        return;
      fail("attention backward: the fused backend cannot run score ", score_fn_name(s.fn),
           " for q [", p.B, ", ", p.Hq, ", ", p.Nq, ", ", p.D, "] (its parameters or their "
           "gradient buffers are missing); use backend automatic or reference");
  }
}

}  // namespace attn::detail
