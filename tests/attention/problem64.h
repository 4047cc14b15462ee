// A contiguous attention problem in double precision owning its buffers, run through the
// reference's double overloads: the base of the gradient checks.
#pragma once

#include <cmath>
#include <vector>

#include "attention/attention_test_util.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn::test {

inline std::vector<double> random_vec(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

// A contiguous double-precision attention problem owning its buffers.
struct Problem64 {
  kernels::AttentionProblem p;
  ref::ScoreParams64 s;
  std::vector<double> q, k, v, w, wq, wk, va, bias, dout;
  std::vector<int32_t> key_lengths;

  Problem64(ScoreFn fn, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq, int64_t Nk, int64_t D,
            int64_t Dk, int64_t Dv, int64_t A, uint64_t seed) {
    p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Nq = Nq, p.Nk = Nk, p.D = D, p.Dk = Dk, p.Dv = Dv;
    const int64_t qs[3] = {Hq * Nq * D, Nq * D, D}, ks[3] = {Hkv * Nk * Dk, Nk * Dk, Dk},
                  vs[3] = {Hkv * Nk * Dv, Nk * Dv, Dv}, os[3] = {Hq * Nq * Dv, Nq * Dv, Dv};
    for (int d = 0; d < 3; ++d)
      p.q_stride[d] = qs[d], p.k_stride[d] = ks[d], p.v_stride[d] = vs[d], p.o_stride[d] = os[d];
    s.fn = fn;
    p.scale = fn == ScoreFn::scaled_dot ? 0.7 : 1.0;
    q = random_vec(B * Hq * Nq * D, seed);
    k = random_vec(B * Hkv * Nk * Dk, seed + 1);
    v = random_vec(B * Hkv * Nk * Dv, seed + 2);
    dout = random_vec(B * Hq * Nq * Dv, seed + 3);
    if (fn == ScoreFn::general) w = random_vec(D * Dk, seed + 4);
    if (fn == ScoreFn::additive) {
      s.A = A;
      wq = random_vec(A * D, seed + 5);
      wk = random_vec(A * Dk, seed + 6);
      va = random_vec(A, seed + 7);
    }
    if (fn == ScoreFn::cosine) s.temperature = 0.6;
  }

  void add_bias(uint64_t seed, int neg_inf_every) {
    bias = random_vec(p.B * p.Hq * p.Nq * p.Nk, seed, -1, 1);
    if (neg_inf_every > 0)
      for (size_t n = 0; n < bias.size(); n += neg_inf_every) bias[n] = -test::kInf;
    p.bias_stride[0] = p.Hq * p.Nq * p.Nk, p.bias_stride[1] = p.Nq * p.Nk;
    p.bias_stride[2] = p.Nk, p.bias_stride[3] = 1;
  }

  void wire() {
    s.w = w.empty() ? nullptr : w.data();
    s.wq = wq.empty() ? nullptr : wq.data();
    s.wk = wk.empty() ? nullptr : wk.data();
    s.va = va.empty() ? nullptr : va.data();
    s.bias = bias.empty() ? nullptr : bias.data();
    p.key_lengths = key_lengths.empty() ? nullptr : key_lengths.data();
  }

  void forward(std::vector<double>& out, std::vector<double>& lse) {
    wire();
    out.assign(p.B * p.Hq * p.Nq * p.Dv, 0.0);
    lse.assign(p.B * p.Hq * p.Nq, 0.0);
    ref::attention_forward(p, s, q.data(), k.data(), v.data(), out.data(), lse.data(), nullptr);
  }

  double loss() {
    std::vector<double> out, lse;
    forward(out, lse);
    double l = 0;
    for (size_t n = 0; n < out.size(); ++n) l += dout[n] * out[n];
    return l;
  }

  // Central differences of loss() with respect to every element of x (skipping -inf).
  std::vector<double> numeric(std::vector<double>& x, double eps = 1e-6) {
    std::vector<double> g(x.size(), 0.0);
    for (size_t n = 0; n < x.size(); ++n) {
      if (std::isinf(x[n])) continue;
      const double x0 = x[n];
      x[n] = x0 + eps;
      const double lp = loss();
      x[n] = x0 - eps;
      const double lm = loss();
      x[n] = x0;
      g[n] = (lp - lm) / (2 * eps);
    }
    return g;
  }
};

struct Analytic {
  std::vector<double> dq, dk, dv, dw, dwq, dwk, dva, dbias;
  double dtemperature = 0;
};

inline Analytic analytic(Problem64& pr) {
  std::vector<double> out, lse;
  pr.forward(out, lse);
  const auto& p = pr.p;
  Analytic a;
  a.dq.assign(pr.q.size(), 0), a.dk.assign(pr.k.size(), 0), a.dv.assign(pr.v.size(), 0);
  a.dw.assign(pr.w.size(), 0), a.dwq.assign(pr.wq.size(), 0), a.dwk.assign(pr.wk.size(), 0);
  a.dva.assign(pr.va.size(), 0);
  a.dbias.assign(p.B * p.Hq * p.Nq * p.Nk, -7);  // must be overwritten everywhere
  auto ptr = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
  ref::attention_backward(p, pr.s, pr.q.data(), pr.k.data(), pr.v.data(), out.data(), lse.data(),
                          pr.dout.data(), a.dq.data(), a.dk.data(), a.dv.data(), ptr(a.dw),
                          ptr(a.dwq), ptr(a.dwk), ptr(a.dva), a.dbias.data(), &a.dtemperature);
  return a;
}

}  // namespace attn::test
