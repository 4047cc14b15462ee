// The attention op: forward and backward side by side, both delegating to attention/.
#include "attn/autograd/attention_op.h"

#include <cmath>
#include <vector>

#include "attn/kernels/attention_problem.h"
#include "attn/kernels/ref/attention_ref.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::make_result;

namespace {

Tensor value_or_none(const Var& v) { return v.defined() ? v.value().contiguous() : Tensor(); }

// Adds g into input i of self when it needs a gradient (g may be undefined: nothing to add).
void add_grad(Node& self, size_t i, const Tensor& g) {
  if (Node* t = detail::grad_target(self, i))
    if (g.defined()) detail::accumulate(*t, g.reshape(t->value.shape()).to(t->value.dtype()).contiguous());
}

// f32: the public API.
AttentionResult attention_f32(const Var& q, const Var& k, const Var& v, const AttentionInputs& in,
                              const AttentionOptions& opts) {
  AttentionExtras ex;
  ex.w = value_or_none(in.w);
  ex.wq = value_or_none(in.wq);
  ex.wk = value_or_none(in.wk);
  ex.va = value_or_none(in.va);
  ex.bias = value_or_none(in.bias);
  ex.key_lengths = in.key_lengths;
  Tensor qv = q.value(), kv = k.value(), vv = v.value();
  AttentionOutput fwd = attention_forward(qv, kv, vv, ex, opts);
  AttentionResult res;
  res.weights = fwd.weights;
  fwd.weights = Tensor();  // the backward recomputes scores; do not keep [B, H, Nq, Nk] alive
  res.out = make_result(fwd.out.contiguous(), "attention", {&q, &k, &v, &in.w, &in.wq, &in.wk, &in.va, &in.bias},
                        [qv, kv, vv, ex, opts, fwd](Node& self) {
                          // out = attention(q, k, v; w, wq, wk, va, bias)
                          // d(q, k, v, w, wq, wk, va, bias) = attention_backward(..., dout)
                          AttentionGrads g = attention_backward(qv, kv, vv, ex, opts, fwd, self.grad);
                          add_grad(self, 0, g.dq);
                          add_grad(self, 1, g.dk);
                          add_grad(self, 2, g.dv);
                          add_grad(self, 3, g.dw);
                          add_grad(self, 4, g.dwq);
                          add_grad(self, 5, g.dwk);
                          add_grad(self, 6, g.dva);
                          add_grad(self, 7, g.dbias);
                        });
  return res;
}

Shape as_4d(const Shape& s) {
  Shape r = s;
  while (r.size() < 4) r.insert(r.begin(), 1);
  return r;
}

// f64: the reference kernel's double entry points, for gradient checks. Same semantics as
// the API (same problem description, same reference code).
struct Ref64 {
  kernels::AttentionProblem p;
  ref::ScoreParams64 s;
  Tensor q, k, v, w, wq, wk, va, bias64, bias32, key_lengths;  // contiguous; q, k, v 4-D
  Shape bias_shape;
};

std::shared_ptr<Ref64> prepare64(const Var& q, const Var& k, const Var& v, const AttentionInputs& in,
                                 const AttentionOptions& opts) {
  auto r = std::make_shared<Ref64>();
  r->q = q.value().contiguous().view(as_4d(q.shape()));
  r->k = k.value().contiguous().view(as_4d(k.shape()));
  r->v = v.value().contiguous().view(as_4d(v.shape()));
  kernels::AttentionProblem& p = r->p;
  p.B = r->q.size(0);
  p.Hq = r->q.size(1);
  p.Nq = r->q.size(2);
  p.D = r->q.size(3);
  p.Hkv = r->k.size(1);
  p.Nk = r->k.size(2);
  p.Dk = r->k.size(3);
  p.Dv = r->v.size(3);
  auto st = [](int64_t* dst, const Tensor& t) {
    for (int d = 0; d < 3; ++d) dst[d] = t.stride(d);
  };
  st(p.q_stride, r->q);
  st(p.k_stride, r->k);
  st(p.v_stride, r->v);
  p.o_stride[0] = p.Hq * p.Nq * p.Dv;
  p.o_stride[1] = p.Nq * p.Dv;
  p.o_stride[2] = p.Dv;
  ref::ScoreParams64& s = r->s;
  s.fn = opts.score;
  s.temperature = opts.temperature;
  switch (opts.score) {
    case ScoreFn::scaled_dot: p.scale = opts.scale.value_or(1.0 / std::sqrt(static_cast<double>(p.D))); break;
    case ScoreFn::cosine: p.scale = 1.0 / opts.temperature; break;
    default: p.scale = 1.0; break;
  }
  r->w = value_or_none(in.w);
  r->wq = value_or_none(in.wq);
  r->wk = value_or_none(in.wk);
  r->va = value_or_none(in.va);
  if (opts.score == ScoreFn::general) s.w = r->w.data<double>();
  if (opts.score == ScoreFn::additive) {
    s.wq = r->wq.data<double>();
    s.wk = r->wk.data<double>();
    s.va = r->va.data<double>();
    s.A = r->wq.size(0);
  }
  p.causal = opts.causal;
  p.query_offset = opts.query_offset;
  if (opts.window) {
    p.has_window = true;
    p.window_left = opts.window->left;
    p.window_right = opts.window->right;
  }
  if (in.key_lengths.defined()) {
    r->key_lengths = in.key_lengths.contiguous();
    p.key_lengths = r->key_lengths.data<int32_t>();
  }
  if (in.bias.defined()) {
    r->bias_shape = in.bias.shape();
    r->bias64 = in.bias.value().contiguous();
    r->bias32 = r->bias64.to(DType::f32);
    p.bias = r->bias32.data<float>();
    s.bias = r->bias64.data<double>();
    const Shape& bs = r->bias_shape;
    if (bs.size() == 2) {
      p.bias_stride[2] = bs[1];
    } else {
      p.bias_stride[0] = bs[0] == 1 ? 0 : bs[1] * bs[2] * bs[3];
      p.bias_stride[1] = bs[1] == 1 ? 0 : bs[2] * bs[3];
      p.bias_stride[2] = bs[3];
    }
    p.bias_stride[3] = 1;
  }
  p.dropout = opts.dropout;
  p.seed = opts.seed;
  return r;
}

AttentionResult attention_f64(const Var& q, const Var& k, const Var& v, const AttentionInputs& in,
                              const AttentionOptions& opts) {
  // A test-only path: checks the shape facts the kernel relies on (the f32 path gets the
  // API's full validation).
  const char* op = "attention (f64)";
  for (const Var* t : {&k, &v}) detail::check_same_dtype(op, q, *t);
  ATTN_CHECK(q.dim() >= 2 && q.dim() <= 4 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": q, k, v must have the same rank 2..4, got ", shape_str(q.shape()), ", ", shape_str(k.shape()),
             ", ", shape_str(v.shape()));
  auto r = prepare64(q, k, v, in, opts);
  const auto& p = r->p;
  const bool same_d = opts.score == ScoreFn::dot || opts.score == ScoreFn::scaled_dot || opts.score == ScoreFn::cosine;
  ATTN_CHECK(r->k.size(0) == p.B && r->v.size(0) == p.B && p.Hq % p.Hkv == 0 && r->v.size(1) == p.Hkv &&
                 r->v.size(2) == p.Nk && (!same_d || p.Dk == p.D),
             op, ": shapes q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()),
             " do not fit together");
  Tensor out = Tensor::empty({p.B, p.Hq, p.Nq, p.Dv}, DType::f64);
  Tensor lse = Tensor::empty({p.B, p.Hq, p.Nq}, DType::f64);
  Tensor weights;
  if (opts.need_weights) weights = Tensor::empty({p.B, p.Hq, p.Nq, p.Nk}, DType::f64);
  ref::attention_forward(p, r->s, r->q.data<double>(), r->k.data<double>(), r->v.data<double>(),
                         out.data<double>(), lse.data<double>(), weights.defined() ? weights.data<double>() : nullptr);
  AttentionResult res;
  if (weights.defined()) {
    const Shape& ws = weights.shape();
    res.weights = weights.view(Shape(ws.end() - q.dim(), ws.end()));
  }
  Shape out_shape = q.shape();
  out_shape.back() = p.Dv;
  res.out = make_result(out.view(out_shape), "attention", {&q, &k, &v, &in.w, &in.wq, &in.wk, &in.va, &in.bias},
                        [r, out, lse](Node& self) {
                          // out = attention(q, k, v; w, wq, wk, va, bias);  reference backward in double
                          const auto& p = r->p;
                          auto buf = [](const Tensor& like) {
                            return like.defined() ? Tensor::empty(like.shape(), DType::f64) : Tensor();
                          };
                          Tensor dq = buf(r->q), dk = buf(r->k), dv = buf(r->v), dw = buf(r->w), dwq = buf(r->wq),
                                 dwk = buf(r->wk), dva = buf(r->va);
                          Tensor dbias_full = r->bias64.defined()
                                                  ? Tensor::empty({p.B, p.Hq, p.Nq, p.Nk}, DType::f64)
                                                  : Tensor();
                          auto ptr = [](Tensor& t) { return t.defined() ? t.data<double>() : nullptr; };
                          double dtemp = 0;
                          ref::attention_backward(p, r->s, r->q.data<double>(), r->k.data<double>(),
                                                  r->v.data<double>(), out.data<double>(), lse.data<double>(),
                                                  self.grad.data<double>(), ptr(dq), ptr(dk), ptr(dv),
                                                  r->s.w ? ptr(dw) : nullptr, r->s.wq ? ptr(dwq) : nullptr,
                                                  r->s.wk ? ptr(dwk) : nullptr, r->s.va ? ptr(dva) : nullptr,
                                                  ptr(dbias_full), &dtemp);
                          add_grad(self, 0, dq);
                          add_grad(self, 1, dk);
                          add_grad(self, 2, dv);
                          if (r->s.w) add_grad(self, 3, dw);
                          if (r->s.wq) {
                            add_grad(self, 4, dwq);
                            add_grad(self, 5, dwk);
                            add_grad(self, 6, dva);
                          }
                          if (dbias_full.defined()) {
                            Tensor db = Tensor::empty(r->bias_shape, DType::f64);
                            detail::sum_to(dbias_full.data<double>(), dbias_full.shape(), db.data<double>(),
                                           r->bias_shape, false);
                            add_grad(self, 7, db);
                          }
                        });
  return res;
}

}  // namespace

AttentionResult attention(const Var& q, const Var& k, const Var& v, const AttentionInputs& extras,
                          const AttentionOptions& opts) {
  ATTN_CHECK(q.defined() && k.defined() && v.defined(), "attention: q, k and v must be defined");
  if (q.dtype() == DType::f64) return attention_f64(q, k, v, extras, opts);
  return attention_f32(q, k, v, extras, opts);
}

}  // namespace attn::ag
