// The public attention API: validates Tensors and options, normalises them to the kernel's
// 4-D strided view (kernels::AttentionProblem), runs the chosen backend and shapes the
// results back to the caller's rank.
#include "attn/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "attention/attention_backend.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {

ScoreFn parse_score_fn(std::string_view name) {
  if (name == "dot") return ScoreFn::dot;
  if (name == "scaled_dot") return ScoreFn::scaled_dot;
  if (name == "cosine") return ScoreFn::cosine;
  if (name == "general") return ScoreFn::general;
  if (name == "additive") return ScoreFn::additive;
  fail("attention: unknown score function '", name,
       "'; expected one of dot, scaled_dot, cosine, general, additive");
}

const char* score_fn_name(ScoreFn s) {
  switch (s) {
    case ScoreFn::dot: return "dot";
    case ScoreFn::scaled_dot: return "scaled_dot";
    case ScoreFn::cosine: return "cosine";
    case ScoreFn::general: return "general";
    case ScoreFn::additive: return "additive";
  }
  return "?";
}

namespace {

// "[B=2, Hq=4, Nq, D=16]" cut to the caller's rank: dims are listed for 4-D and the leading
// ones dropped for 3-D / 2-D inputs.
std::string dims_str(int64_t rank, const std::vector<std::string>& dims) {
  std::ostringstream os;
  os << '[';
  const size_t first = dims.size() - static_cast<size_t>(rank);
  for (size_t i = first; i < dims.size(); ++i) os << (i > first ? ", " : "") << dims[i];
  os << ']';
  return os.str();
}

std::string named(const char* name, int64_t value) { return detail::concat(name, '=', value); }

// The last `keep` entries of a shape.
Shape tail(const Shape& s, size_t keep) { return Shape(s.end() - static_cast<int64_t>(keep), s.end()); }

// Multi-index of flat row-major position n in shape s, as "[i, j, ...]".
std::string index_str(const Shape& s, int64_t n) {
  Shape idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = s[d] ? n % s[d] : 0;
    n = s[d] ? n / s[d] : 0;
  }
  return shape_str(idx);
}

void check_float_dtype(const char* op, const char* name, const Tensor& t) {
  ATTN_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, op, ": ", name, " has dtype ",
             dtype_name(t.dtype()), " (shape ", shape_str(t.shape()), "); expected f32 or bf16");
}

// f32 with a contiguous last dimension (bf16 is converted; other strides are kept).
Tensor as_f32_rows(const Tensor& t) {
  Tensor f = t.dtype() == DType::f32 ? t : t.to(DType::f32);
  if (f.dim() > 0 && f.size(-1) > 1 && f.stride(-1) != 1) f = f.contiguous();
  return f;
}

Tensor as_f32_contiguous(const Tensor& t) { return t.to(DType::f32).contiguous(); }

Tensor to_4d(Tensor t) {
  while (t.dim() < 4) t = t.unsqueeze(0);
  return t;
}

// The first element of a float tensor (f32 or bf16, any strides) that is NaN or infinite
// (-inf allowed when allow_neg_inf): its row-major position (-1 if none) and value. Reads in
// place, without copying the tensor.
struct NonFinite {
  int64_t pos = -1;
  float value = 0;
};

NonFinite first_non_finite(const Tensor& t, bool allow_neg_inf) {
  const Tensor t4 = to_4d(t);  // every tensor checked here has rank <= 4
  const Shape& n = t4.shape();
  const Shape& st = t4.strides();
  const bool is_bf16 = t4.dtype() == DType::bf16;
  const void* base = t4.raw_data();
  int64_t pos = 0;
  for (int64_t a = 0; a < n[0]; ++a)
    for (int64_t b = 0; b < n[1]; ++b)
      for (int64_t c = 0; c < n[2]; ++c)
        for (int64_t d = 0; d < n[3]; ++d, ++pos) {
          const int64_t off = a * st[0] + b * st[1] + c * st[2] + d * st[3];
          const float x = is_bf16 ? bf16_to_f32(static_cast<const bf16*>(base)[off])
                                  : static_cast<const float*>(base)[off];
          if (!std::isfinite(x) && !(allow_neg_inf && x == -std::numeric_limits<float>::infinity()))
            return {pos, x};
        }
  return {};
}

// NaN / Inf check for check_finite (allow_neg_inf: for the bias, where -inf hides a key).
void check_finite_values(const char* op, const char* name, const Tensor& t, bool allow_neg_inf) {
  const NonFinite bad = first_non_finite(t, allow_neg_inf);
  if (bad.pos < 0) return;
  const float x = bad.value;
  fail(op, ": ", name, " holds ", std::isnan(x) ? "NaN" : (x > 0 ? "+inf" : "-inf"), " at ",
       index_str(t.shape(), bad.pos), " (shape ", shape_str(t.shape()), ")",
       allow_neg_inf ? "; bias values must be finite or -inf" : " and check_finite is set");
}

// Everything attention_forward / attention_backward need after validation.
struct Prepared {
  int64_t rank = 4;
  Tensor q, k, v;        // 4-D f32, last dim contiguous
  Tensor w, wq, wk, va;  // f32 contiguous, or undefined
  Tensor key_lengths;    // i32 [B] contiguous, or undefined
  Tensor bias;           // f32 as given (rank 2 or 4), last dim contiguous, or undefined
  kernels::AttentionProblem p;
  ref::ScoreParams s;
};

void set_strides(int64_t* dst, const Tensor& t4) {
  // A size-1 dimension's stride never moves a pointer but may hold anything (a view of a
  // transposed copy gives 1); give it the dense value, so that kernels passing a row stride to
  // BLAS as its leading dimension (which must be >= the row length) stay valid
  // (fuzz_attend crash-eb80e7f5: general score, Nq = 1, q row stride 1 < D).
  int64_t inner = t4.size(3);
  for (int d = 2; d >= 0; --d) {
    dst[d] = t4.size(d) == 1 ? inner : t4.stride(d);
    inner = dst[d] * t4.size(d);
  }
}

// Bound on |query_offset| so that i + query_offset never overflows.
constexpr int64_t kMaxOffset = int64_t{1} << 62;

void check_options(const char* op, const AttentionOptions& o) {
  const ScoreFn fn = o.score;
  ATTN_CHECK(fn == ScoreFn::dot || fn == ScoreFn::scaled_dot || fn == ScoreFn::cosine ||
                 fn == ScoreFn::general || fn == ScoreFn::additive,
             op, ": score has invalid value ", static_cast<int>(fn));
  if (o.scale) {
    ATTN_CHECK(fn == ScoreFn::scaled_dot, op, ": scale = ", *o.scale, " is set but score is ",
               score_fn_name(fn), "; scale applies to score scaled_dot only");
    ATTN_CHECK(std::isfinite(*o.scale), op, ": scale = ", *o.scale, " must be finite");
  }
  ATTN_CHECK(std::isfinite(o.temperature) && o.temperature > 0, op, ": temperature = ",
             o.temperature, " must be positive and finite");
  ATTN_CHECK(o.dropout >= 0 && o.dropout < 1, op, ": dropout = ", o.dropout,
             " is out of range [0, 1)");
  ATTN_CHECK(o.query_offset >= -kMaxOffset && o.query_offset <= kMaxOffset, op, ": query_offset = ",
             o.query_offset, " is out of range [-2^62, 2^62]");
  if (o.window) {
    ATTN_CHECK(o.window->left >= 0, op, ": window left = ", o.window->left, " must be >= 0");
    ATTN_CHECK(o.window->right >= 0, op, ": window right = ", o.window->right, " must be >= 0");
  }
  ATTN_CHECK(o.backend == AttentionBackend::automatic || o.backend == AttentionBackend::reference ||
                 o.backend == AttentionBackend::fused,
             op, ": backend has invalid value ", static_cast<int>(o.backend));
}

// A score-function parameter: present exactly when `needed`, float, with shape `expected`.
Tensor score_param(const char* op, const char* name, const Tensor& t, bool needed, ScoreFn fn,
                   const char* used_by, const Shape& expected, const std::string& expected_str,
                   bool check_finite) {
  if (!needed) {
    ATTN_CHECK(!t.defined(), op, ": ", name, " is given (shape ", shape_str(t.shape()),
               ") but score is ", score_fn_name(fn), "; ", name, " is used by score ", used_by,
               " only");
    return Tensor();
  }
  ATTN_CHECK(t.defined(), op, ": score ", score_fn_name(fn), " needs ", name, " ", expected_str,
             " but it is missing");
  check_float_dtype(op, name, t);
  ATTN_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()),
             "; expected ", name, " ", expected_str, " for score ", score_fn_name(fn));
  if (check_finite) check_finite_values(op, name, t, false);
  return as_f32_contiguous(t);
}

// convert_qkv = false keeps q, k, v in pr as given (bf16 for the bf16 kernel, which reads
// them itself): the f32 copies would cost a full conversion pass per call for nothing.
Prepared prepare(const char* op, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                 const AttentionExtras& ex, const AttentionOptions& o, bool convert_qkv = true) {
  check_options(op, o);
  const struct {
    const char* name;
    const Tensor& t;
  } qkv[] = {{"q", q_in}, {"k", k_in}, {"v", v_in}};
  for (const auto& [name, t] : qkv) {
    ATTN_CHECK(t.defined(), op, ": ", name, " is undefined");
    check_float_dtype(op, name, t);
  }
  const int64_t rank = q_in.dim();
  ATTN_CHECK(rank >= 2 && rank <= 4, op, ": q has shape ", shape_str(q_in.shape()), " (rank ", rank,
             "); expected 2-D [N, D], 3-D [H, N, D] or 4-D [B, H, N, D]");
  for (const auto& [name, t] : qkv) {
    ATTN_CHECK(t.dim() == rank, op, ": ", name, " has shape ", shape_str(t.shape()),
               " but q has shape ", shape_str(q_in.shape()), "; q, k and v must have the same rank");
    for (int64_t d : t.shape())
      ATTN_CHECK(d > 0, op, ": ", name, " has shape ", shape_str(t.shape()),
                 "; every dimension must be at least 1 (empty attention is undefined)");
  }

  Prepared pr;
  pr.rank = rank;
  pr.q = to_4d(convert_qkv ? as_f32_rows(q_in) : q_in);
  pr.k = to_4d(convert_qkv ? as_f32_rows(k_in) : k_in);
  pr.v = to_4d(convert_qkv ? as_f32_rows(v_in) : v_in);
  kernels::AttentionProblem& p = pr.p;
  p.B = pr.q.size(0);
  p.Hq = pr.q.size(1);
  p.Nq = pr.q.size(2);
  p.D = pr.q.size(3);
  p.Hkv = pr.k.size(1);
  p.Nk = pr.k.size(2);
  p.Dk = pr.k.size(3);
  p.Dv = pr.v.size(3);
  const ScoreFn fn = o.score;
  const bool same_d = fn == ScoreFn::dot || fn == ScoreFn::scaled_dot || fn == ScoreFn::cosine;
  ATTN_CHECK(pr.k.size(0) == p.B && p.Hq % p.Hkv == 0 && (!same_d || p.Dk == p.D), op, ": k has shape ",
             shape_str(k_in.shape()), " but q has shape ", shape_str(q_in.shape()), "; expected k ",
             dims_str(rank, {named("B", p.B), named("Hkv dividing Hq", p.Hq), "Nk",
                             same_d ? named("D", p.D) : std::string("Dk")}),
             same_d ? detail::concat(" for score ", score_fn_name(fn)) : std::string());
  ATTN_CHECK(pr.v.size(0) == p.B && pr.v.size(1) == p.Hkv && pr.v.size(2) == p.Nk, op,
             ": v has shape ", shape_str(v_in.shape()), " but k has shape ", shape_str(k_in.shape()),
             "; expected v ", dims_str(rank, {named("B", p.B), named("Hkv", p.Hkv), named("Nk", p.Nk), "Dv"}));
  if (o.check_finite)
    for (const auto& [name, t] : qkv) check_finite_values(op, name, t, false);
  set_strides(p.q_stride, pr.q);
  set_strides(p.k_stride, pr.k);
  set_strides(p.v_stride, pr.v);

  // Score function and its parameters.
  ref::ScoreParams& s = pr.s;
  s.fn = fn;
  s.temperature = o.temperature;
  const bool general = fn == ScoreFn::general, additive = fn == ScoreFn::additive;
  pr.w = score_param(op, "w", ex.w, general, fn, "general", {p.D, p.Dk},
                     dims_str(2, {named("D", p.D), named("Dk", p.Dk)}), o.check_finite);
  int64_t A = 0;
  if (additive && ex.wq.defined() && ex.wq.dim() == 2) A = ex.wq.size(0);
  const std::string a_str = A > 0 ? named("A", A) : std::string("A");
  ATTN_CHECK(!additive || !ex.wq.defined() || ex.wq.dim() != 2 || A > 0, op, ": wq has shape ",
             shape_str(ex.wq.shape()), "; expected wq [A >= 1, D=", p.D, "]");
  pr.wq = score_param(op, "wq", ex.wq, additive, fn, "additive", {A, p.D},
                      dims_str(2, {a_str, named("D", p.D)}), o.check_finite);
  pr.wk = score_param(op, "wk", ex.wk, additive, fn, "additive", {A, p.Dk},
                      dims_str(2, {a_str, named("Dk", p.Dk)}), o.check_finite);
  pr.va = score_param(op, "va", ex.va, additive, fn, "additive", {A}, dims_str(1, {a_str}),
                      o.check_finite);
  if (general) s.w = pr.w.data<float>();
  if (additive) {
    s.wq = pr.wq.data<float>();
    s.wk = pr.wk.data<float>();
    s.va = pr.va.data<float>();
    s.A = A;
  }
  switch (fn) {
    case ScoreFn::scaled_dot: p.scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(p.D))); break;
    case ScoreFn::cosine: p.scale = 1.0 / o.temperature; break;
    default: p.scale = 1.0; break;
  }

  // Masks.
  p.causal = o.causal;
  p.query_offset = o.query_offset;
  if (o.window) {
    // Sides beyond the keys change nothing; clamping them keeps p_i - left and p_i + right
    // in range for kernels (a caller may pass INT64_MAX for "unbounded").
    p.has_window = true;
    p.window_left = std::min(o.window->left, std::max<int64_t>(0, p.Nq - 1 + o.query_offset));
    p.window_right = std::min(o.window->right, std::max<int64_t>(0, p.Nk - 1 - o.query_offset));
  }
  if (ex.key_lengths.defined()) {
    const Tensor& kl = ex.key_lengths;
    ATTN_CHECK(kl.dtype() == DType::i32, op, ": key_lengths has dtype ", dtype_name(kl.dtype()),
               " (shape ", shape_str(kl.shape()), "); expected i32");
    ATTN_CHECK(kl.shape() == Shape{p.B}, op, ": key_lengths has shape ", shape_str(kl.shape()),
               " but q has shape ", shape_str(q_in.shape()), "; expected key_lengths [B=", p.B, "]");
    pr.key_lengths = kl.contiguous();
    const int32_t* len = pr.key_lengths.data<int32_t>();
    for (int64_t b = 0; b < p.B; ++b)
      ATTN_CHECK(len[b] >= 0 && len[b] <= p.Nk, op, ": key_lengths[", b, "] = ", len[b],
                 " is out of range [0, Nk=", p.Nk, "]");
    p.key_lengths = len;
  }
  if (ex.bias.defined()) {
    const Tensor& bias = ex.bias;
    check_float_dtype(op, "bias", bias);
    const Shape& bs = bias.shape();
    const bool ok2 = bias.dim() == 2 && bs[0] == p.Nq && bs[1] == p.Nk;
    const bool ok4 = bias.dim() == 4 && (bs[0] == p.B || bs[0] == 1) &&
                     (bs[1] == p.Hq || bs[1] == 1) && bs[2] == p.Nq && bs[3] == p.Nk;
    ATTN_CHECK(ok2 || ok4, op, ": bias has shape ", shape_str(bs), " but q has shape ",
               shape_str(q_in.shape()), " and k has shape ", shape_str(k_in.shape()),
               "; expected bias [Nq=", p.Nq, ", Nk=", p.Nk, "] or [B=", p.B, " or 1, Hq=", p.Hq,
               " or 1, Nq=", p.Nq, ", Nk=", p.Nk, "]");
    // Always checked: NaN or +inf in the bias would turn whole rows into NaN.
    check_finite_values(op, "bias", bias, true);
    pr.bias = as_f32_rows(bias);
    p.bias = pr.bias.data<float>();
    if (ok2) {
      p.bias_stride[0] = p.bias_stride[1] = 0;
      p.bias_stride[2] = pr.bias.stride(0);
      p.bias_stride[3] = 1;
    } else {
      for (int d = 0; d < 2; ++d) p.bias_stride[d] = bs[d] == 1 ? 0 : pr.bias.stride(d);
      p.bias_stride[2] = pr.bias.stride(2);
      p.bias_stride[3] = 1;
    }
  }
  p.dropout = o.dropout;
  p.seed = o.seed;
  return pr;
}

// Sums a full [B, Hq, Nq, Nk] gradient over the dimensions the given bias broadcasts.
Tensor reduce_to_bias(const Tensor& full, const Shape& bias_shape) {
  const Shape& fs = full.shape();
  const int64_t B = fs[0], H = fs[1], Nq = fs[2], Nk = fs[3];
  const bool b_bcast = bias_shape.size() == 2 || bias_shape[0] == 1;
  const bool h_bcast = bias_shape.size() == 2 || bias_shape[1] == 1;
  const int64_t rb = b_bcast ? 1 : B, rh = h_bcast ? 1 : H;
  std::vector<double> acc(static_cast<size_t>(rb * rh * Nq * Nk), 0.0);
  const float* src = full.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const float* blk = src + (b * H + h) * Nq * Nk;
      double* dst = &acc[static_cast<size_t>(((b_bcast ? 0 : b) * rh + (h_bcast ? 0 : h)) * Nq * Nk)];
      for (int64_t n = 0; n < Nq * Nk; ++n) dst[n] += blk[n];
    }
  Tensor out = Tensor::empty(bias_shape);
  float* o = out.data<float>();
  for (size_t n = 0; n < acc.size(); ++n) o[n] = static_cast<float>(acc[n]);
  return out;
}

// Whether the forward takes the bf16 kernel: q, k and v all bf16, a dot-family score the
// fused kernel serves, no weights asked (they are recomputed from f32 copies), and a backend
// that allows the fused path.
bool bf16_fused_applies(const Tensor& q, const Tensor& k, const Tensor& v, const Prepared& pr,
                        const AttentionOptions& opts) {
  if (q.dtype() != DType::bf16 || k.dtype() != DType::bf16 || v.dtype() != DType::bf16) return false;
  if (opts.backend == AttentionBackend::reference || opts.need_weights) return false;
  if (pr.s.fn == ScoreFn::cosine)  // rows of denormals go to the f32 path (and the reference)
    return detail::cosine_norms_fit_f32(pr.p, pr.q.data<float>(), pr.k.data<float>());
  return pr.s.fn == ScoreFn::dot || pr.s.fn == ScoreFn::scaled_dot;
}

}  // namespace

AttentionOutput attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionExtras& extras, const AttentionOptions& opts) {
  // bf16 q, k, v with a dot-family score go to the bf16 kernel unconverted (what
  // bf16_fused_applies decides for them, known before prepare).
  const bool bf16_direct = q.dtype() == DType::bf16 && k.dtype() == DType::bf16 &&
                           v.dtype() == DType::bf16 && !opts.need_weights &&
                           opts.backend != AttentionBackend::reference &&
                           (opts.score == ScoreFn::dot || opts.score == ScoreFn::scaled_dot);
  Prepared pr = prepare("attention", q, k, v, extras, opts, !bf16_direct);
  kernels::AttentionProblem& p = pr.p;
  const size_t lead = static_cast<size_t>(pr.rank);  // dims kept of the 4-D shapes
  Tensor out = Tensor::empty({p.B, p.Hq, p.Nq, p.Dv});
  Tensor lse = Tensor::empty({p.B, p.Hq, p.Nq});
  Tensor weights;
  if (opts.need_weights) weights = Tensor::empty({p.B, p.Hq, p.Nq, p.Nk});
  set_strides(p.o_stride, out);
  if (bf16_direct || bf16_fused_applies(q, k, v, pr, opts)) {
    // bf16 q, k, v go to the bf16 kernel as they are (f32 accumulation): its tiles use the
    // CPU's bf16 dot products. (For cosine, prepare() made f32 copies to check the norms.)
    const Tensor q4 = to_4d(q.contiguous()), k4 = to_4d(k.contiguous()), v4 = to_4d(v.contiguous());
    kernels::AttentionProblem pb = p;
    set_strides(pb.q_stride, q4);
    set_strides(pb.k_stride, k4);
    set_strides(pb.v_stride, v4);
    detail::run_forward_bf16(pb, pr.s, q4.data<bf16>(), k4.data<bf16>(), v4.data<bf16>(),
                             out.data<float>(), lse.data<float>());
  } else {
    detail::run_forward(p, pr.s, pr.q.data<float>(), pr.k.data<float>(), pr.v.data<float>(),
                        out.data<float>(), lse.data<float>(),
                        weights.defined() ? weights.data<float>() : nullptr, opts.backend);
  }
  AttentionOutput res;
  res.out = out.view(tail(out.shape(), lead));
  res.lse = lse.view(tail(lse.shape(), lead - 1));
  if (weights.defined()) res.weights = weights.view(tail(weights.shape(), lead));
  return res;
}

AttentionGrads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionExtras& extras, const AttentionOptions& opts,
                                  const AttentionOutput& fwd, const Tensor& dout) {
  const char* op = "attention backward";
  Prepared pr = prepare(op, q, k, v, extras, opts);
  kernels::AttentionProblem& p = pr.p;
  const size_t lead = static_cast<size_t>(pr.rank);
  const Shape out_shape = tail({p.B, p.Hq, p.Nq, p.Dv}, lead);
  const Shape lse_shape = tail({p.B, p.Hq, p.Nq}, lead - 1);
  const struct {
    const char* name;
    const Tensor& t;
    const Shape& expected;
  } given[] = {{"fwd.out", fwd.out, out_shape}, {"fwd.lse", fwd.lse, lse_shape}, {"dout", dout, out_shape}};
  for (const auto& [name, t, expected] : given) {
    ATTN_CHECK(t.defined(), op, ": ", name, " is undefined; expected shape ", shape_str(expected));
    check_float_dtype(op, name, t);
    ATTN_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()),
               " but q has shape ", shape_str(q.shape()), " and v has shape ", shape_str(v.shape()),
               "; expected ", name, " ", shape_str(expected));
  }
  if (opts.check_finite) check_finite_values(op, "dout", dout, false);
  Tensor out = to_4d(as_f32_contiguous(fwd.out));
  Tensor lse = as_f32_contiguous(fwd.lse);
  Tensor dout4 = as_f32_contiguous(dout);
  set_strides(p.o_stride, out);

  AttentionGrads g;
  Tensor dq = Tensor::empty({p.B, p.Hq, p.Nq, p.D});
  Tensor dk = Tensor::empty({p.B, p.Hkv, p.Nk, p.Dk});
  Tensor dv = Tensor::empty({p.B, p.Hkv, p.Nk, p.Dv});
  Tensor dbias_full;
  if (pr.bias.defined()) dbias_full = Tensor::empty({p.B, p.Hq, p.Nq, p.Nk});
  if (pr.w.defined()) g.dw = Tensor::empty(pr.w.shape());
  if (pr.wq.defined()) {
    g.dwq = Tensor::empty(pr.wq.shape());
    g.dwk = Tensor::empty(pr.wk.shape());
    g.dva = Tensor::empty(pr.va.shape());
  }
  auto ptr = [](Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  double dtemperature = 0;
  detail::run_backward(p, pr.s, pr.q.data<float>(), pr.k.data<float>(), pr.v.data<float>(),
                       out.data<float>(), lse.data<float>(), dout4.data<float>(), dq.data<float>(),
                       dk.data<float>(), dv.data<float>(), ptr(g.dw), ptr(g.dwq), ptr(g.dwk),
                       ptr(g.dva), ptr(dbias_full),
                       opts.score == ScoreFn::cosine ? &dtemperature : nullptr, opts.backend);
  g.dq = dq.view(q.shape());
  g.dk = dk.view(k.shape());
  g.dv = dv.view(v.shape());
  if (dbias_full.defined()) g.dbias = reduce_to_bias(dbias_full, extras.bias.shape());
  g.dtemperature = dtemperature;
  return g;
}

}  // namespace attn
