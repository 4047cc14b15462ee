#include "attn/autograd/loss.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index, double eps) {
  ATTN_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", shape_str(logits.shape()));
  const int64_t N = logits.size(0), C = logits.size(1);
  ATTN_CHECK(targets.defined() && targets.dtype() == DType::i32 && targets.dim() == 1 && targets.size(0) == N,
             "cross_entropy: targets must be i32 [", N, "] for logits ", shape_str(logits.shape()), ", got ",
             targets.defined() ? shape_str(targets.shape()) : std::string("<undefined>"));
  ATTN_CHECK(eps >= 0 && eps <= 1, "cross_entropy: label_smoothing ", eps, " must be in [0, 1]");
  Tensor tv = targets.contiguous();
  const int32_t* tp = tv.data<int32_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (tp[i] == ignore_index) continue;
    ATTN_CHECK(tp[i] >= 0 && tp[i] < C, "cross_entropy: target ", tp[i], " out of range for ", C, " classes");
    ++count;
  }
  Tensor lv = logits.value().contiguous();
  // log-softmax rows, kept for the backward (softmax = exp).
  // (a Tensor, so its storage comes from the cache: no fresh pages every step)
  auto logp = std::make_shared<Tensor>(Tensor::empty({N, C}, DType::f64));
  double total = 0;
  dispatch(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = lv.data<T>();
    for (int64_t i = 0; i < N; ++i) {
      if (tp[i] == ignore_index) continue;
      const T* r = x + i * C;
      double m = r[0];
      for (int64_t c = 1; c < C; ++c) m = std::max(m, static_cast<double>(r[c]));
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += std::exp(r[c] - m);
      const double lse = m + std::log(s);
      double* lp = logp->data<double>() + i * C;
      double sum_lp = 0;
      for (int64_t c = 0; c < C; ++c) {
        lp[c] = r[c] - lse;
        sum_lp += lp[c];
      }
      total += -(1 - eps) * lp[tp[i]] - eps / static_cast<double>(C) * sum_lp;
    }
  });
  const double denom = count > 0 ? static_cast<double>(count) : 1.0;
  Tensor out = Tensor::full({}, static_cast<float>(total / denom), logits.dtype());
  if (logits.dtype() == DType::f64) *out.data<double>() = total / denom;
  return make_result(out, "cross_entropy", {&logits}, [tv, logp, N, C, ignore_index, eps, denom](Node& self) {
    // l_i = -(1-eps) log p[t] - eps/C sum_c log p[c]
    // dlogits[i, c] = dL/denom * (p[c] - (1-eps) [c == t] - eps/C); 0 for ignored rows
    Node* t = grad_target(self, 0);
    if (!t) return;
    dispatch(self.value.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      const double gl = static_cast<double>(*self.grad.data<T>()) / denom;
      const int32_t* tp = tv.data<int32_t>();
      bool acc;
      T* d = grad_buffer(*t, &acc).data<T>();
      for (int64_t i = 0; i < N; ++i) {
        T* dr = d + i * C;
        if (tp[i] == ignore_index) {
          if (!acc)
            for (int64_t c = 0; c < C; ++c) dr[c] = 0;
          continue;
        }
        const double* lp = logp->data<double>() + i * C;
        for (int64_t c = 0; c < C; ++c) {
          double v = std::exp(lp[c]) - eps / static_cast<double>(C) - (c == tp[i] ? 1 - eps : 0.0);
          T tv2 = static_cast<T>(gl * v);
          dr[c] = acc ? dr[c] + tv2 : tv2;
        }
      }
    });
  });
}

}  // namespace attn::ag
