// The reference attention: plain loops, every sum in double. One template over the element
// type T (float for the library, double for gradient checks).
//
// Forward, per batch b, query head h, query row i (kv head g = h / (Hq / Hkv)):
//   s_ij   = score(q_i, k_j) [* scale] + bias_ij      for visible j, else hidden
//   P_ij   = exp(s_ij - lse_i),  lse_i = log sum_j exp(s_ij)          (softmax)
//   W_ij   = P_ij * keep_ij / (1 - p)                                  (dropout)
//   out_i  = sum_j W_ij v_j
// Backward of L = sum(dout * out):
//   dv_j  += W_ij dout_i
//   dP_ij  = (dout_i . v_j) * keep_ij / (1 - p)
//   dS_ij  = P_ij (dP_ij - sum_l P_il dP_il)                           (softmax Jacobian)
//   and dS_ij flows into q_i, k_j and the score function's parameters.
#include "attn/kernels/ref/attention_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attn/core/rng.h"

namespace attn::ref {
namespace {

using kernels::AttentionProblem;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// ScoreParams and ScoreParams64 seen through one type.
template <typename T>
struct Params {
  ScoreFn fn;
  const T* w;
  const T* wq;
  const T* wk;
  const T* va;
  int64_t A;
  double temperature;
  const double* bias64;  // overrides p.bias when set
};

Params<float> unify(const ScoreParams& s) {
  return {s.fn, s.w, s.wq, s.wk, s.va, s.A, s.temperature, nullptr};
}
Params<double> unify(const ScoreParams64& s) {
  return {s.fn, s.w, s.wq, s.wk, s.va, s.A, s.temperature, s.bias};
}

double dot(const double* a, const double* b, int64_t n) {
  double acc = 0;
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// Everything the score function needs for one (b, h): the q rows and the k rows in double,
// plus per-row projections, so a score is a short loop.
//   general:  qw_i = q_iᵀ W  [Dk],  wk_j = W k_j [D]
//   additive: qa_i = W_q q_i [A],   ka_j = W_k k_j [A]
//   cosine:   |q_i|, |k_j|
template <typename T>
struct HeadScores {
  const AttentionProblem& p;
  const Params<T>& s;
  int64_t b = 0, h = 0;
  std::vector<double> q, k;         // [Nq, D], [Nk, Dk]
  std::vector<double> qw, wk;       // general
  std::vector<double> qa, ka;       // additive
  std::vector<double> qn, kn;       // cosine norms
  std::vector<double> w, wq, wkm, va;  // parameters in double

  HeadScores(const AttentionProblem& p_, const Params<T>& s_) : p(p_), s(s_) {
    if (s.fn == ScoreFn::general) w.assign(s.w, s.w + p.D * p.Dk);
    if (s.fn == ScoreFn::additive) {
      wq.assign(s.wq, s.wq + s.A * p.D);
      wkm.assign(s.wk, s.wk + s.A * p.Dk);
      va.assign(s.va, s.va + s.A);
    }
  }

  void load(const T* qp, const T* kp, int64_t b_, int64_t h_) {
    b = b_;
    h = h_;
    const int64_t g = p.kv_head(h);
    const int64_t D = p.D, Dk = p.Dk, A = s.A;
    q.assign(p.Nq * D, 0.0);
    k.assign(p.Nk * Dk, 0.0);
    for (int64_t i = 0; i < p.Nq; ++i) {
      const T* row = qp + b * p.q_stride[0] + h * p.q_stride[1] + i * p.q_stride[2];
      for (int64_t d = 0; d < D; ++d) q[i * D + d] = static_cast<double>(row[d]);
    }
    for (int64_t j = 0; j < p.Nk; ++j) {
      const T* row = kp + b * p.k_stride[0] + g * p.k_stride[1] + j * p.k_stride[2];
      for (int64_t d = 0; d < Dk; ++d) k[j * Dk + d] = static_cast<double>(row[d]);
    }
    switch (s.fn) {
      case ScoreFn::dot:
      case ScoreFn::scaled_dot: break;
      case ScoreFn::cosine:
        qn.assign(p.Nq, 0.0);
        kn.assign(p.Nk, 0.0);
        for (int64_t i = 0; i < p.Nq; ++i) qn[i] = std::sqrt(dot(&q[i * D], &q[i * D], D));
        for (int64_t j = 0; j < p.Nk; ++j) kn[j] = std::sqrt(dot(&k[j * Dk], &k[j * Dk], Dk));
        break;
      case ScoreFn::general:
        qw.assign(p.Nq * Dk, 0.0);
        wk.assign(p.Nk * D, 0.0);
        for (int64_t i = 0; i < p.Nq; ++i)
          for (int64_t a = 0; a < D; ++a)
            for (int64_t c = 0; c < Dk; ++c) qw[i * Dk + c] += q[i * D + a] * w[a * Dk + c];
        for (int64_t j = 0; j < p.Nk; ++j)
          for (int64_t a = 0; a < D; ++a) wk[j * D + a] = dot(&w[a * Dk], &k[j * Dk], Dk);
        break;
      case ScoreFn::additive:
        qa.assign(p.Nq * A, 0.0);
        ka.assign(p.Nk * A, 0.0);
        for (int64_t i = 0; i < p.Nq; ++i)
          for (int64_t a = 0; a < A; ++a) qa[i * A + a] = dot(&wq[a * D], &q[i * D], D);
        for (int64_t j = 0; j < p.Nk; ++j)
          for (int64_t a = 0; a < A; ++a) ka[j * A + a] = dot(&wkm[a * Dk], &k[j * Dk], Dk);
        break;
    }
  }

  double bias(int64_t i, int64_t j) const {
    if (s.bias64)
      return s.bias64[b * p.bias_stride[0] + h * p.bias_stride[1] + i * p.bias_stride[2] +
                      j * p.bias_stride[3]];
    return static_cast<double>(p.bias_at(b, h, i, j));
  }

  double cosine(int64_t i, int64_t j) const {
    if (qn[i] == 0.0 || kn[j] == 0.0) return 0.0;  // no direction: score 0, never NaN
    return dot(&q[i * p.D], &k[j * p.Dk], p.D) / (qn[i] * kn[j]);
  }

  // s_ij before the mask; the caller decides visibility.
  double score(int64_t i, int64_t j) const {
    double raw = 0;
    switch (s.fn) {
      case ScoreFn::dot:
      case ScoreFn::scaled_dot: raw = dot(&q[i * p.D], &k[j * p.Dk], p.D) * p.scale; break;
      case ScoreFn::cosine: raw = cosine(i, j) / s.temperature; break;
      case ScoreFn::general: raw = dot(&qw[i * p.Dk], &k[j * p.Dk], p.Dk) * p.scale; break;
      case ScoreFn::additive: {
        double acc = 0;
        for (int64_t a = 0; a < s.A; ++a) acc += va[a] * std::tanh(qa[i * s.A + a] + ka[j * s.A + a]);
        raw = acc * p.scale;
        break;
      }
    }
    return raw + bias(i, j);
  }

  // Scores of row i, -inf where hidden; returns lse_i (-inf when nothing is visible) and
  // leaves the softmax probabilities P_ij in `prob`.
  double row_softmax(int64_t i, std::vector<double>& sc, std::vector<double>& prob) const {
    double m = kNegInf;
    for (int64_t j = 0; j < p.Nk; ++j) {
      sc[j] = p.visible(b, i, j) ? score(i, j) : kNegInf;
      if (sc[j] > m) m = sc[j];
    }
    if (m == kNegInf) {
      for (int64_t j = 0; j < p.Nk; ++j) prob[j] = 0;
      return kNegInf;
    }
    double z = 0;
    for (int64_t j = 0; j < p.Nk; ++j) {
      prob[j] = sc[j] == kNegInf ? 0.0 : std::exp(sc[j] - m);
      z += prob[j];
    }
    for (int64_t j = 0; j < p.Nk; ++j) prob[j] /= z;
    return m + std::log(z);
  }

  // Dropout multiplier of weight (i, j): keep / (1 - p).
  double drop(int64_t i, int64_t j) const {
    if (p.dropout == 0.0) return 1.0;
    return dropout_keep(p.seed, p.dropout, b, h, i, j, p.Hq, p.Nq, p.Nk) ? 1.0 / (1.0 - p.dropout)
                                                                          : 0.0;
  }
};

template <typename T>
void forward_impl(const AttentionProblem& p, const Params<T>& s, const T* q, const T* k,
                  const T* v, T* out, T* lse, T* weights) {
  HeadScores<T> hs(p, s);
  std::vector<double> sc(p.Nk), prob(p.Nk), acc(p.Dv);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.Hq; ++h) {
      hs.load(q, k, b, h);
      const int64_t g = p.kv_head(h);
      for (int64_t i = 0; i < p.Nq; ++i) {
        const double l = hs.row_softmax(i, sc, prob);
        std::fill(acc.begin(), acc.end(), 0.0);
        const int64_t row = (b * p.Hq + h) * p.Nq + i;
        for (int64_t j = 0; j < p.Nk; ++j) {
          const double wij = prob[j] == 0.0 ? 0.0 : prob[j] * hs.drop(i, j);
          if (weights) weights[row * p.Nk + j] = static_cast<T>(wij);
          if (wij == 0.0) continue;
          const T* vr = v + b * p.v_stride[0] + g * p.v_stride[1] + j * p.v_stride[2];
          for (int64_t d = 0; d < p.Dv; ++d) acc[d] += wij * static_cast<double>(vr[d]);
        }
        T* o = out + b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2];
        for (int64_t d = 0; d < p.Dv; ++d) o[d] = static_cast<T>(acc[d]);
        lse[row] = static_cast<T>(l);
      }
    }
  }
}

template <typename T>
void backward_impl(const AttentionProblem& p, const Params<T>& s, const T* q, const T* k,
                   const T* v, const T* dout, T* dq, T* dk, T* dv, T* dw, T* dwq, T* dwk, T* dva,
                   T* dbias, double* dtemperature) {
  const int64_t D = p.D, Dk = p.Dk, Dv = p.Dv, A = s.A, Nq = p.Nq, Nk = p.Nk;
  // Accumulators in double, written out at the end.
  std::vector<double> gq(p.B * p.Hq * Nq * D, 0.0), gk(p.B * p.Hkv * Nk * Dk, 0.0),
      gv(p.B * p.Hkv * Nk * Dv, 0.0);
  std::vector<double> gw(s.fn == ScoreFn::general ? D * Dk : 0, 0.0);
  std::vector<double> gwq(s.fn == ScoreFn::additive ? A * D : 0, 0.0),
      gwk(s.fn == ScoreFn::additive ? A * Dk : 0, 0.0), gva(s.fn == ScoreFn::additive ? A : 0, 0.0);
  double gtemp = 0;

  HeadScores<T> hs(p, s);
  std::vector<double> sc(Nk), prob(Nk), dprob(Nk), vrow(Dv), gqa, gka;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.Hq; ++h) {
      hs.load(q, k, b, h);
      const int64_t g = p.kv_head(h);
      double* gq_bh = &gq[(b * p.Hq + h) * Nq * D];
      double* gk_bg = &gk[(b * p.Hkv + g) * Nk * Dk];
      double* gv_bg = &gv[(b * p.Hkv + g) * Nk * Dv];
      if (s.fn == ScoreFn::additive) {
        gqa.assign(Nq * A, 0.0);  // dL/d(W_q q_i)
        gka.assign(Nk * A, 0.0);  // dL/d(W_k k_j), this head's share
      }
      for (int64_t i = 0; i < Nq; ++i) {
        const int64_t row = (b * p.Hq + h) * Nq + i;
        if (dbias)
          for (int64_t j = 0; j < Nk; ++j) dbias[row * Nk + j] = T(0);
        if (hs.row_softmax(i, sc, prob) == kNegInf) continue;  // nothing visible: no gradient
        const T* dor = dout + row * Dv;
        // dP_ij = (dout_i . v_j) * drop_ij;  dv_j += P_ij drop_ij dout_i
        double sum_pdp = 0;
        for (int64_t j = 0; j < Nk; ++j) {
          dprob[j] = 0;
          if (prob[j] == 0.0) continue;
          const double mult = hs.drop(i, j);
          if (mult == 0.0) continue;
          const T* vr = v + b * p.v_stride[0] + g * p.v_stride[1] + j * p.v_stride[2];
          double dw_ij = 0;
          for (int64_t d = 0; d < Dv; ++d) {
            dw_ij += static_cast<double>(dor[d]) * static_cast<double>(vr[d]);
            gv_bg[j * Dv + d] += prob[j] * mult * static_cast<double>(dor[d]);
          }
          dprob[j] = dw_ij * mult;
          sum_pdp += prob[j] * dprob[j];
        }
        for (int64_t j = 0; j < Nk; ++j) {
          if (prob[j] == 0.0) continue;
          // dS_ij = P_ij (dP_ij - sum_l P_il dP_il)
          const double ds = prob[j] * (dprob[j] - sum_pdp);
          if (dbias) dbias[row * Nk + j] = static_cast<T>(ds);
          const double* qi = &hs.q[i * D];
          const double* kj = &hs.k[j * Dk];
          switch (s.fn) {
            case ScoreFn::dot:
            case ScoreFn::scaled_dot: {
              // s = (q . k) * scale
              const double gr = ds * p.scale;
              for (int64_t d = 0; d < D; ++d) {
                gq_bh[i * D + d] += gr * kj[d];
                gk_bg[j * Dk + d] += gr * qi[d];
              }
              break;
            }
            case ScoreFn::cosine: {
              // s = c / T, c = q.k / (|q| |k|):
              //   dc/dq = k / (|q||k|) - c q / |q|^2,  dc/dk = q / (|q||k|) - c k / |k|^2
              const double nq = hs.qn[i], nk = hs.kn[j];
              if (nq == 0.0 || nk == 0.0) break;  // score is the constant 0 there
              const double c = hs.cosine(i, j), t = s.temperature;
              const double dc = ds / t;
              gtemp -= ds * c / (t * t);
              for (int64_t d = 0; d < D; ++d) {
                gq_bh[i * D + d] += dc * (kj[d] / (nq * nk) - c * qi[d] / (nq * nq));
                gk_bg[j * Dk + d] += dc * (qi[d] / (nq * nk) - c * kj[d] / (nk * nk));
              }
              break;
            }
            case ScoreFn::general: {
              // s = qᵀ W k * scale: dq = W k, dk = Wᵀ q, dW = q kᵀ
              const double gr = ds * p.scale;
              for (int64_t a = 0; a < D; ++a) gq_bh[i * D + a] += gr * hs.wk[j * D + a];
              for (int64_t c = 0; c < Dk; ++c) gk_bg[j * Dk + c] += gr * hs.qw[i * Dk + c];
              for (int64_t a = 0; a < D; ++a)
                for (int64_t c = 0; c < Dk; ++c) gw[a * Dk + c] += gr * qi[a] * kj[c];
              break;
            }
            case ScoreFn::additive: {
              // s = vₐᵀ tanh(u) * scale, u = W_q q + W_k k: dvₐ = tanh(u), du = vₐ (1 - tanh²)
              const double gr = ds * p.scale;
              for (int64_t a = 0; a < A; ++a) {
                const double t = std::tanh(hs.qa[i * A + a] + hs.ka[j * A + a]);
                gva[a] += gr * t;
                const double du = gr * hs.va[a] * (1.0 - t * t);
                gqa[i * A + a] += du;
                gka[j * A + a] += du;
              }
              break;
            }
          }
        }
      }
      if (s.fn == ScoreFn::additive) {
        // Through u = W_q q + W_k k: dq = W_qᵀ du_q, dW_q = du_q qᵀ (and the same for k).
        for (int64_t i = 0; i < Nq; ++i)
          for (int64_t a = 0; a < A; ++a) {
            const double du = gqa[i * A + a];
            if (du == 0.0) continue;
            for (int64_t d = 0; d < D; ++d) {
              gq_bh[i * D + d] += du * hs.wq[a * D + d];
              gwq[a * D + d] += du * hs.q[i * D + d];
            }
          }
        for (int64_t j = 0; j < Nk; ++j)
          for (int64_t a = 0; a < A; ++a) {
            const double du = gka[j * A + a];
            if (du == 0.0) continue;
            for (int64_t c = 0; c < Dk; ++c) {
              gk_bg[j * Dk + c] += du * hs.wkm[a * Dk + c];
              gwk[a * Dk + c] += du * hs.k[j * Dk + c];
            }
          }
      }
    }
  }

  auto store = [](const std::vector<double>& src, T* dst) {
    if (!dst) return;
    for (size_t n = 0; n < src.size(); ++n) dst[n] = static_cast<T>(src[n]);
  };
  store(gq, dq);
  store(gk, dk);
  store(gv, dv);
  store(gw, dw);
  store(gwq, dwq);
  store(gwk, dwk);
  store(gva, dva);
  if (dtemperature) *dtemperature = gtemp;
}

}  // namespace

void attention_forward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                       const float* k, const float* v, float* out, float* lse, float* weights) {
  forward_impl(p, unify(s), q, k, v, out, lse, weights);
}

void attention_backward(const kernels::AttentionProblem& p, const ScoreParams& s, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, float* dw, float* dwq,
                        float* dwk, float* dva, float* dbias, double* dtemperature) {
  backward_impl(p, unify(s), q, k, v, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias, dtemperature);
}

void attention_forward(const kernels::AttentionProblem& p, const ScoreParams64& s, const double* q,
                       const double* k, const double* v, double* out, double* lse, double* weights) {
  forward_impl(p, unify(s), q, k, v, out, lse, weights);
}

void attention_backward(const kernels::AttentionProblem& p, const ScoreParams64& s, const double* q,
                        const double* k, const double* v, const double* out, const double* lse,
                        const double* dout, double* dq, double* dk, double* dv, double* dw,
                        double* dwq, double* dwk, double* dva, double* dbias,
                        double* dtemperature) {
  backward_impl(p, unify(s), q, k, v, dout, dq, dk, dv, dw, dwq, dwk, dva, dbias, dtemperature);
}

}  // namespace attn::ref
