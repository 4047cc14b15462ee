// Fused additive attention score: forward and backward side by side.
#include "attn/autograd/additive_score.h"

#include <algorithm>
#include <cmath>

#include "autograd/op_util.h"

namespace attn::ag {

namespace {

inline float tanh_r(float x) {
  // Eigen (Eigen/src/Core/arch/Default/GenericPacketMathFunctions.h, ptanh_float): odd
  // rational 13/6 on the clamped input.
  const float c = 7.90531110763549805f;
  x = std::min(c, std::max(-c, x));
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

inline float tanh_t(float x) { return tanh_r(x); }
inline double tanh_t(double x) { return std::tanh(x); }

}  // namespace

float tanh_rational(float x) { return tanh_r(x); }

Var additive_score(const Var& keys, const Var& query, const Var& v, const Var& extra) {
  const char* op = "additive_score";
  ATTN_CHECK(keys.defined() && keys.dim() == 3, op, ": keys must be [B, S, A], got ",
             keys.defined() ? shape_str(keys.shape()) : std::string("undefined"));
  const int64_t B = keys.size(0), S = keys.size(1), A = keys.size(2);
  ATTN_CHECK(query.defined() && query.dim() == 2 && query.size(0) == B && query.size(1) == A, op, ": query ",
             query.defined() ? shape_str(query.shape()) : std::string("undefined"), " expected [", B, ", ", A,
             "] for keys ", shape_str(keys.shape()));
  ATTN_CHECK(v.defined() && v.numel() == A, op, ": v ", v.defined() ? shape_str(v.shape()) : std::string("undefined"),
             " must have ", A, " elements");
  if (extra.defined())
    ATTN_CHECK(extra.shape() == keys.shape(), op, ": extra ", shape_str(extra.shape()), " must match keys ",
               shape_str(keys.shape()));
  detail::check_same_dtype(op, keys, query);
  detail::check_same_dtype(op, keys, v);
  if (extra.defined()) detail::check_same_dtype(op, keys, extra);
  return detail::dispatch(keys.dtype(), op, [&](auto zero) -> Var {
    using T = decltype(zero);
    Tensor kk, qk, vk, ek;
    const T* k = detail::cdata<T>(keys.value(), &kk);
    const T* q = detail::cdata<T>(query.value(), &qk);
    const T* w = detail::cdata<T>(v.value(), &vk);
    const T* e = extra.defined() ? detail::cdata<T>(extra.value(), &ek) : nullptr;
    Tensor th = Tensor::empty({B, S, A}, keys.dtype());
    Tensor out = Tensor::empty({B, S}, keys.dtype());
    T* t = th.data<T>();
    T* o = out.data<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t r = (b * S + s) * A;
        const T* qb = q + b * A;
        T* tr = t + r;
        if (e) {
#pragma omp simd
          for (int64_t a = 0; a < A; ++a) tr[a] = tanh_t(k[r + a] + qb[a] + e[r + a]);
        } else {
#pragma omp simd
          for (int64_t a = 0; a < A; ++a) tr[a] = tanh_t(k[r + a] + qb[a]);
        }
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t a = 0; a < A; ++a) acc += w[a] * tr[a];
        o[b * S + s] = acc;
      }
    const bool has_extra = extra.defined();
    return detail::make_result(out, op, {&keys, &query, &v, &extra}, [th, vk, B, S, A, has_extra](Node& self) {
      // e = Σ_a v_a tanh(k + q + x): dk = dx = de v (1 - t²), dq = Σ_s dk, dv = Σ de t.
      Tensor dek;
      const T* de = detail::cdata<T>(self.grad, &dek);
      const T* t = th.data<T>();
      const T* w = vk.data<T>();
      Tensor g = Tensor::empty({B, S, A}, th.dtype());
      Tensor dq = Tensor::zeros({B, A}, th.dtype());
      Tensor dv = Tensor::zeros({A}, th.dtype());
      T* gp = g.data<T>();
      T* dqp = dq.data<T>();
      T* dvp = dv.data<T>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < S; ++s) {
          const int64_t r = (b * S + s) * A;
          const T d = de[b * S + s];
#pragma omp simd
          for (int64_t a = 0; a < A; ++a) {
            const T ta = t[r + a];
            const T ga = d * w[a] * (T(1) - ta * ta);
            gp[r + a] = ga;
            dqp[b * A + a] += ga;
            dvp[a] += d * ta;
          }
        }
      if (Node* n = detail::grad_target(self, 0)) detail::accumulate(*n, g);
      if (Node* n = detail::grad_target(self, 1)) detail::accumulate(*n, dq);
      if (Node* n = detail::grad_target(self, 2)) detail::accumulate(*n, dv.view(n->value.shape()));
      if (has_extra)
        if (Node* n = detail::grad_target(self, 3)) detail::accumulate(*n, g);
    });
  });
}

}  // namespace attn::ag
