#include "attn/nn/multihead_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "attn/attention/attention.h"
#include "attn/autograd/ops.h"
#include "attn/autograd/packed_attention.h"

namespace attn::nn {

MultiheadAttention::MultiheadAttention(int64_t E, int64_t H, Rng& rng, const MultiheadAttentionOptions& o)
    : embed_dim(E), num_heads(H), opts(o) {
  ATTN_CHECK(E > 0 && H > 0 && E % H == 0, "MultiheadAttention: embed_dim ", E, " must be a positive multiple of num_heads ", H);
  num_kv_heads = o.num_kv_heads > 0 ? o.num_kv_heads : H;
  ATTN_CHECK(H % num_kv_heads == 0, "MultiheadAttention: num_kv_heads ", num_kv_heads, " must divide num_heads ", H);
  ATTN_CHECK(o.dropout >= 0 && o.dropout < 1, "MultiheadAttention: dropout ", o.dropout, " must be in [0, 1)");
  head_dim = E / H;
  kdim = o.kdim > 0 ? o.kdim : E;
  vdim = o.vdim > 0 ? o.vdim : E;
  const int64_t Ekv = num_kv_heads * head_dim;
  auto xavier = [&](int64_t out, int64_t in) {
    return uniform_init({out, in}, std::sqrt(6.0 / static_cast<double>(in + out)), rng);
  };
  if (kdim == E && vdim == E) {
    register_parameter("in_proj_weight", &in_proj_weight, xavier(E + 2 * Ekv, E));
  } else {
    register_parameter("q_proj_weight", &q_proj_weight, xavier(E, E));
    register_parameter("k_proj_weight", &k_proj_weight, xavier(Ekv, kdim));
    register_parameter("v_proj_weight", &v_proj_weight, xavier(Ekv, vdim));
  }
  if (o.bias) register_parameter("in_proj_bias", &in_proj_bias, Tensor::zeros({E + 2 * Ekv}));
  out_proj = register_module("out_proj", std::make_shared<Linear>(E, E, rng, o.bias));
  if (o.bias) out_proj->bias.mutable_value().fill(0.f);
  stream_.seed = rng.next_u64();
}

namespace {

// Additive [B|1, H|1, Nq, Nk] bias from torch-style masks; undefined when there is none.
Tensor combine_masks(const AttentionMasks& m, int64_t B, int64_t H, int64_t Nq, int64_t Nk) {
  const float ninf = -std::numeric_limits<float>::infinity();
  auto additive = [&](const Tensor& t) {
    Tensor c = t.contiguous();
    Tensor r = Tensor::empty(t.shape());
    float* o = r.data<float>();
    if (t.dtype() == DType::i32) {
      for (int64_t i = 0; i < t.numel(); ++i) o[i] = c.data<int32_t>()[i] ? ninf : 0.f;
    } else {
      ATTN_CHECK(t.dtype() == DType::f32, "MultiheadAttention: masks must be i32 or f32, got ", dtype_name(t.dtype()));
      r.copy_from(c);
    }
    return r;
  };
  Tensor am, kpm;
  if (m.attn_mask.defined()) {
    const Shape& s = m.attn_mask.shape();
    ATTN_CHECK((s == Shape{Nq, Nk}) || (s == Shape{B * H, Nq, Nk}), "MultiheadAttention: attn_mask ", shape_str(s),
               " expected [", Nq, ", ", Nk, "] or [", B * H, ", ", Nq, ", ", Nk, "]");
    am = additive(m.attn_mask).view(s.size() == 2 ? Shape{1, 1, Nq, Nk} : Shape{B, H, Nq, Nk});
  }
  if (m.key_padding_mask.defined()) {
    ATTN_CHECK((m.key_padding_mask.shape() == Shape{B, Nk}), "MultiheadAttention: key_padding_mask ",
               shape_str(m.key_padding_mask.shape()), " expected [", B, ", ", Nk, "]");
    kpm = additive(m.key_padding_mask);
  }
  if (!am.defined() && !kpm.defined()) return Tensor();
  if (!kpm.defined()) return am;
  const int64_t Hb = am.defined() ? am.size(1) : 1;
  Tensor bias = Tensor::empty({B, Hb, Nq, Nk});
  float* o = bias.data<float>();
  const float* kp = kpm.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hb; ++h)
      for (int64_t i = 0; i < Nq; ++i)
        for (int64_t j = 0; j < Nk; ++j)
          o[((b * Hb + h) * Nq + i) * Nk + j] =
              kp[b * Nk + j] + (am.defined() ? am.get({am.size(0) == 1 ? 0 : b, am.size(1) == 1 ? 0 : h, i, j}) : 0.f);
  return bias;
}

Tensor average_heads(const Tensor& weights);

// [B, N, H*Dh] -> [B, H, N, Dh]
Var split_heads(const Var& x, int64_t H) {
  const int64_t B = x.size(0), N = x.size(1), Dh = x.size(2) / H;
  return ag::transpose(ag::reshape(x, {B, N, H, Dh}), 1, 2);
}

}  // namespace

Var MultiheadAttention::project_q(const Var& query) {
  const int64_t E = embed_dim;
  Var b = in_proj_bias.defined() ? ag::slice(in_proj_bias, 0, 0, E) : Var();
  return ag::linear(query, in_proj_weight.defined() ? ag::slice(in_proj_weight, 0, 0, E) : q_proj_weight, b);
}

std::pair<Var, Var> MultiheadAttention::project_kv_vars(const Var& key, const Var& value) {
  const int64_t E = embed_dim, Ekv = num_kv_heads * head_dim;
  auto bias_part = [&](int64_t a, int64_t b) { return in_proj_bias.defined() ? ag::slice(in_proj_bias, 0, a, b) : Var(); };
  if (in_proj_weight.defined() && key.node() == value.node()) {
    auto kv = ag::split(ag::linear(key, ag::slice(in_proj_weight, 0, E, E + 2 * Ekv), bias_part(E, E + 2 * Ekv)), 2,
                        {Ekv, Ekv});
    return {kv[0], kv[1]};
  }
  if (in_proj_weight.defined())
    return {ag::linear(key, ag::slice(in_proj_weight, 0, E, E + Ekv), bias_part(E, E + Ekv)),
            ag::linear(value, ag::slice(in_proj_weight, 0, E + Ekv, E + 2 * Ekv), bias_part(E + Ekv, E + 2 * Ekv))};
  return {ag::linear(key, k_proj_weight, bias_part(E, E + Ekv)), ag::linear(value, v_proj_weight, bias_part(E + Ekv, E + 2 * Ekv))};
}

MhaOutput MultiheadAttention::attend(const Var& q, int64_t q_col, const Var& k, int64_t k_col, const Var& v,
                                     int64_t v_col, const AttentionMasks& masks, bool need_weights, bool average) {
  const int64_t B = q.size(0), Nq = q.size(1), Nk = k.size(1);
  ag::AttentionInputs in;
  in.key_lengths = masks.key_lengths;
  Tensor bias = combine_masks(masks, B, num_heads, Nq, Nk);
  if (bias.defined()) in.bias = Var(bias.to(q.dtype()), false);
  AttentionOptions ao;
  ao.score = ScoreFn::scaled_dot;
  ao.causal = masks.is_causal;
  ao.need_weights = need_weights;
  if (is_training() && opts.dropout > 0) {
    ao.dropout = opts.dropout;
    ao.seed = mix64(stream_.seed ^ stream_.take(1));
  }
  // Heads read in place from the projections; the output comes back as [B, Nq, E].
  ag::AttentionResult r = ag::packed_attention({q, q_col, num_heads, head_dim}, {k, k_col, num_kv_heads, head_dim},
                                               {v, v_col, num_kv_heads, head_dim}, in, ao);
  Var o = out_proj->forward(r.out);
  MhaOutput res;
  res.out = opts.batch_first ? o : ag::transpose(o, 0, 1);
  if (need_weights) res.weights = average ? average_heads(r.weights) : r.weights;
  return res;
}

MhaOutput MultiheadAttention::forward(const Var& query_in, const Var& key_in, const Var& value_in,
                                      const AttentionMasks& masks, bool need_weights, bool average) {
  const bool bf = opts.batch_first;
  Var query = bf ? query_in : ag::transpose(query_in, 0, 1);
  Var key = key_in.node() == query_in.node() ? query : (bf ? key_in : ag::transpose(key_in, 0, 1));
  Var value = value_in.node() == key_in.node() ? key : (bf ? value_in : ag::transpose(value_in, 0, 1));
  const int64_t E = embed_dim, Ekv = num_kv_heads * head_dim;
  ATTN_CHECK(query.dim() == 3 && query.size(2) == E, "MultiheadAttention: query ", shape_str(query_in.shape()),
             " expected last dim ", E);
  ATTN_CHECK(key.dim() == 3 && key.size(2) == kdim && value.dim() == 3 && value.size(2) == vdim &&
                 key.size(0) == query.size(0) && value.size(0) == query.size(0) && key.size(1) == value.size(1),
             "MultiheadAttention: key ", shape_str(key_in.shape()), " / value ", shape_str(value_in.shape()),
             " do not fit query ", shape_str(query_in.shape()), " (kdim ", kdim, ", vdim ", vdim, ")");

  if (in_proj_weight.defined() && query.node() == key.node() && key.node() == value.node()) {
    // Self-attention: one GEMM for q, k and v; the heads stay in its output.
    Var qkv = ag::linear(query, in_proj_weight, in_proj_bias);
    return attend(qkv, 0, qkv, E, qkv, E + Ekv, masks, need_weights, average);
  }
  Var q = project_q(query);
  if (in_proj_weight.defined() && key.node() == value.node()) {
    // One GEMM for k and v (cross-attention on one memory).
    Var kv = ag::linear(key, ag::slice(in_proj_weight, 0, E, E + 2 * Ekv),
                        in_proj_bias.defined() ? ag::slice(in_proj_bias, 0, E, E + 2 * Ekv) : Var());
    return attend(q, 0, kv, 0, kv, Ekv, masks, need_weights, average);
  }
  auto [k, v] = project_kv_vars(key, value);
  return attend(q, 0, k, 0, v, 0, masks, need_weights, average);
}

namespace {

// w: [B, H, Nq, Nk] -> mean over heads [B, Nq, Nk] (f32).
Tensor average_heads(const Tensor& weights) {
  const Tensor w = weights.to(DType::f32).contiguous();
  const int64_t B = w.size(0), H = w.size(1), M = w.size(2) * w.size(3);
  Tensor avg = Tensor::zeros({B, w.size(2), w.size(3)});
  const float* pw = w.data<float>();
  float* pa = avg.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t n = 0; n < M; ++n) pa[b * M + n] += pw[(b * H + h) * M + n] / static_cast<float>(H);
  return avg;
}

// x: [N, 1, H*Dh] -> contiguous copy viewed as [N, H, 1, Dh] (a strided view; its last dim is
// contiguous, which is all the fused kernels need).
Tensor step_heads(const Var& x, int64_t H) {
  const Tensor c = x.value().to(DType::f32).contiguous();
  return c.view({c.size(0), 1, H, c.size(2) / H}).transpose(1, 2);
}

}  // namespace

KvCache MultiheadAttention::project_kv(const Var& key_in, const Var& value_in, const Tensor& key_lengths) {
  ag::NoGradGuard no_grad;
  const bool bf = opts.batch_first;
  Var key = bf ? key_in : ag::transpose(key_in, 0, 1);
  Var value = value_in.node() == key_in.node() ? key : (bf ? value_in : ag::transpose(value_in, 0, 1));
  ATTN_CHECK(key.dim() == 3 && key.size(2) == kdim && value.dim() == 3 && value.size(2) == vdim &&
                 key.size(0) == value.size(0) && key.size(1) == value.size(1),
             "MultiheadAttention.project_kv: key ", shape_str(key_in.shape()), " / value ",
             shape_str(value_in.shape()), " expected [B, Nk, ", kdim, "] / [B, Nk, ", vdim, "]");
  const int64_t B = key.size(0);
  ATTN_CHECK(!key_lengths.defined() ||
                 (key_lengths.dtype() == DType::i32 && key_lengths.shape() == Shape{B}),
             "MultiheadAttention.project_kv: key_lengths ", shape_str(key_lengths.shape()), " expected i32 [", B, "]");
  auto [k, v] = project_kv_vars(key, value);
  KvCache c;
  c.k = split_heads(k, num_kv_heads).value().to(DType::f32).contiguous();
  c.v = split_heads(v, num_kv_heads).value().to(DType::f32).contiguous();
  c.length = key.size(1);
  if (key_lengths.defined()) c.key_lengths = key_lengths.contiguous();
  return c;
}

MhaOutput MultiheadAttention::forward_step(const Var& query_in, KvCache& cache, bool append, bool need_weights,
                                           bool average) {
  ag::NoGradGuard no_grad;
  Var query = opts.batch_first ? query_in : ag::transpose(query_in, 0, 1);
  const int64_t E = embed_dim, Ekv = num_kv_heads * head_dim;
  ATTN_CHECK(query.dim() == 3 && query.size(1) == 1 && query.size(2) == E, "MultiheadAttention.forward_step: query ",
             shape_str(query_in.shape()), " expected one position of width ", E);
  const int64_t N = query.size(0);
  ATTN_CHECK(cache.rows() == N || (append && cache.rows() == 0), "MultiheadAttention.forward_step: cache has ",
             cache.rows(), " rows, query ", shape_str(query_in.shape()));
  Var q;
  if (append) {
    ATTN_CHECK(kdim == E && vdim == E, "MultiheadAttention.forward_step: appending needs kdim = vdim = embed_dim ", E,
               ", got ", kdim, ", ", vdim);
    Var k, v;
    if (in_proj_weight.defined()) {
      auto qkv = ag::split(ag::linear(query, in_proj_weight, in_proj_bias), 2, {E, Ekv, Ekv});
      q = qkv[0];
      k = qkv[1];
      v = qkv[2];
    } else {
      q = project_q(query);
      std::tie(k, v) = project_kv_vars(query, query);
    }
    const int64_t L = cache.length, capacity = cache.rows() == 0 ? 0 : cache.k.size(2);
    if (L == capacity) {  // grow: double the capacity, keep the first L positions
      const int64_t cap = std::max<int64_t>(16, 2 * capacity);
      Tensor nk = Tensor::empty({N, num_kv_heads, cap, head_dim}), nv = Tensor::empty({N, num_kv_heads, cap, head_dim});
      if (L > 0) {
        nk.slice(2, 0, L).copy_from(cache.keys());
        nv.slice(2, 0, L).copy_from(cache.values());
      }
      cache.k = nk;
      cache.v = nv;
    }
    cache.k.slice(2, L, L + 1).copy_from(step_heads(k, num_kv_heads));
    cache.v.slice(2, L, L + 1).copy_from(step_heads(v, num_kv_heads));
    cache.length = L + 1;
  } else {
    ATTN_CHECK(cache.length > 0, "MultiheadAttention.forward_step: empty cache without append");
    q = project_q(query);
  }
  // The single query is the newest position: every cached key is visible (no causal mask).
  // The fused kernel reads the cache views in place.
  AttentionExtras ex;
  ex.key_lengths = cache.key_lengths;
  AttentionOptions ao;
  ao.score = ScoreFn::scaled_dot;
  ao.need_weights = need_weights;
  AttentionOutput r = attention_forward(step_heads(q, num_heads), cache.keys(), cache.values(), ex, ao);
  // r.out [N, H, 1, Dh] is laid out as [N, 1, E].
  Var o = out_proj->forward(Var(r.out.view({N, 1, E}).to(query.dtype()), false));
  MhaOutput res;
  res.out = opts.batch_first ? o : ag::transpose(o, 0, 1);
  if (need_weights) res.weights = average ? average_heads(r.weights) : r.weights;
  return res;
}

void KvCache::reorder(const Tensor& rows) {
  ATTN_CHECK(rows.defined() && rows.dtype() == DType::i32 && rows.dim() == 1, "KvCache.reorder: rows must be i32 [M], got ",
             rows.defined() ? shape_str(rows.shape()) : std::string("undefined"));
  if (!k.defined()) return;  // nothing cached yet (a self-attention cache before the first step)
  const Tensor r = rows.contiguous();
  const int32_t* pr = r.data<int32_t>();
  const int64_t M = r.numel(), N = this->rows();
  for (int64_t i = 0; i < M; ++i)
    ATTN_CHECK(pr[i] >= 0 && pr[i] < N, "KvCache.reorder: row ", pr[i], " outside [0, ", N, ")");
  // Gather the valid positions of every row into a buffer of the same capacity.
  Shape shape = k.shape();
  shape[0] = M;
  Tensor nk = Tensor::empty(shape), nv = Tensor::empty(shape);
  for (int64_t i = 0; i < M; ++i) {
    nk.select(0, i).slice(1, 0, length).copy_from(k.select(0, pr[i]).slice(1, 0, length));
    nv.select(0, i).slice(1, 0, length).copy_from(v.select(0, pr[i]).slice(1, 0, length));
  }
  k = nk;
  v = nv;
  if (key_lengths.defined()) {
    Tensor kl = Tensor::empty({M}, DType::i32);
    const Tensor old = key_lengths.contiguous();
    for (int64_t i = 0; i < M; ++i) kl.data<int32_t>()[i] = old.data<int32_t>()[pr[i]];
    key_lengths = kl;
  }
}

}  // namespace attn::nn
