// Attention scores for the RNN decoder (see the header for the equations).
#include "attn/models/rnn_attention.h"

#include <cmath>
#include <limits>

#include "attn/autograd/ops.h"
#include "attn/autograd/additive_score.h"

namespace attn::models {

std::string attention_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::bahdanau: return "bahdanau";
    case AttentionKind::luong_dot: return "luong-dot";
    case AttentionKind::luong_general: return "luong-general";
    case AttentionKind::luong_concat: return "luong-concat";
    case AttentionKind::location: return "location";
  }
  return "?";
}

AttentionKind parse_attention(const std::string& name) {
  for (AttentionKind k : {AttentionKind::bahdanau, AttentionKind::luong_dot, AttentionKind::luong_general,
                          AttentionKind::luong_concat, AttentionKind::location})
    if (attention_name(k) == name) return k;
  fail("attention: unknown variant '", name,
       "' (expected bahdanau, luong-dot, luong-general, luong-concat or location)");
}

bool is_additive(AttentionKind k) {
  return k == AttentionKind::bahdanau || k == AttentionKind::luong_concat || k == AttentionKind::location;
}

RnnAttention::RnnAttention(AttentionKind k, int64_t dq, int64_t dk, int64_t a, Rng& rng, int64_t filters,
                           int64_t kernel)
    : kind(k), query_dim(dq), key_dim(dk), attn_dim(a), location_filters(filters), location_kernel(kernel) {
  ATTN_CHECK(dq > 0 && dk > 0, "RnnAttention: query_dim ", dq, " and key_dim ", dk, " must be positive");
  if (k == AttentionKind::luong_dot)
    ATTN_CHECK(dq == dk, "RnnAttention: luong-dot needs query_dim == key_dim, got ", dq, " and ", dk);
  if (is_additive(k)) {
    ATTN_CHECK(a > 0, "RnnAttention: attn_dim ", a, " must be positive for ", attention_name(k));
    const bool bias = k != AttentionKind::luong_concat;
    query_proj = register_module("query_proj", std::make_shared<nn::Linear>(dq, a, rng, false));
    key_proj = register_module("key_proj", std::make_shared<nn::Linear>(dk, a, rng, bias));
    v = register_module("v", std::make_shared<nn::Linear>(a, 1, rng, false));
  } else if (k == AttentionKind::luong_general) {
    key_proj = register_module("key_proj", std::make_shared<nn::Linear>(dk, dq, rng, false));
  }
  if (k == AttentionKind::location) {
    ATTN_CHECK(filters > 0 && kernel > 0 && kernel % 2 == 1, "RnnAttention: location needs filters > 0 and an odd kernel, got ",
               filters, " and ", kernel);
    // torch.nn.Conv1d(1, R, K) init: U(-1/sqrt(K), 1/sqrt(K)).
    register_parameter("location_conv.weight", &location_conv,
                       nn::uniform_init({filters, 1, kernel}, 1.0 / std::sqrt(static_cast<double>(kernel)), rng));
    location_proj = register_module("location_proj", std::make_shared<nn::Linear>(filters, a, rng, false));
  }
}

AttentionMemory RnnAttention::prepare(const Var& values, const Tensor& lengths) const {
  ATTN_CHECK(values.dim() == 3 && values.size(2) == key_dim, "RnnAttention: values ", shape_str(values.shape()),
             " expected [B, S, ", key_dim, "]");
  const int64_t B = values.size(0), S = values.size(1);
  ATTN_CHECK(lengths.defined() && lengths.dtype() == DType::i32 && lengths.dim() == 1 && lengths.size(0) == B,
             "RnnAttention: lengths must be i32 [", B, "], got ",
             lengths.defined() ? shape_str(lengths.shape()) : std::string("undefined"));
  AttentionMemory m;
  m.values = values;
  m.lengths = lengths.contiguous();
  // keys: [B, S, A] (additive: U h_j + b, once per batch), [B, S, Dq] (general: W_a h_j).
  m.keys = key_proj ? key_proj->forward(values) : values;
  Tensor mask = Tensor::zeros({B, S}, DType::f64);
  const int32_t* len = m.lengths.data<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    ATTN_CHECK(len[b] >= 1 && len[b] <= S, "RnnAttention: length ", len[b], " of sequence ", b, " not in [1, ", S, "]");
    for (int64_t j = len[b]; j < S; ++j)
      mask.data<double>()[b * S + j] = -std::numeric_limits<double>::infinity();
  }
  m.mask = Var(mask.to(values.dtype()), false);
  return m;
}

std::pair<Var, Var> RnnAttention::forward(const AttentionMemory& m, const Var& query, const Var& prev_weights) const {
  const int64_t B = m.values.size(0), S = m.values.size(1);
  ATTN_CHECK(query.dim() == 2 && query.size(0) == B && query.size(1) == query_dim, "RnnAttention: query ",
             shape_str(query.shape()), " expected [", B, ", ", query_dim, "]");
  Var scores;  // [B, S]
  if (is_additive(kind)) {
    Var pq = query_proj->forward(query);  // [B, A]
    Var loc;                              // [B, S, A] location term
    if (kind == AttentionKind::location) {
      // f = F * α_prev as a correlation with zero padding K / 2 (torch Conv1d): the K shifted
      // copies of α_prev side by side [B, S, K], times F [R, K] -> [B, S, R].
      const int64_t K = location_kernel, P = K / 2;
      Var prev = prev_weights.defined() ? prev_weights : Var(Tensor::zeros({B, S}, m.values.dtype()), false);
      ATTN_CHECK(prev.dim() == 2 && prev.size(0) == B && prev.size(1) == S, "RnnAttention: prev_weights ",
                 shape_str(prev.shape()), " expected [", B, ", ", S, "]");
      Var pad(Tensor::zeros({B, P}, m.values.dtype()), false);
      Var padded = ag::concat({pad, prev, pad}, 1);  // [B, S + K - 1]
      std::vector<Var> shifts;
      for (int64_t k = 0; k < K; ++k) shifts.push_back(ag::slice(padded, 1, k, k + S));
      Var windows = ag::stack(shifts, 2);                                                        // [B, S, K]
      Var f = ag::linear(windows, ag::reshape(location_conv, {location_filters, K}));          // [B, S, R]
      loc = location_proj->forward(f);
    }
    scores = ag::additive_score(m.keys, pq, v->weight, loc);  // vᵀ tanh(U h_j + b + W s (+ V f_j))
  } else {
    scores = ag::reshape(ag::bmm(m.keys, ag::reshape(query, {B, query_dim, 1})), {B, S});
  }
  Var weights = ag::softmax(ag::add(scores, m.mask), -1);                                   // [B, S]
  Var context = ag::reshape(ag::bmm(ag::reshape(weights, {B, 1, S}), m.values), {B, key_dim});  // [B, Dk]
  return {weights, context};
}

AttentionMemory RnnAttention::select(const AttentionMemory& m, const Tensor& rows) {
  AttentionMemory r;
  r.values = ag::index_select(m.values, rows);
  r.keys = m.keys.node() == m.values.node() ? r.values : ag::index_select(m.keys, rows);
  r.mask = ag::index_select(m.mask, rows);
  Tensor idx = rows.contiguous();
  r.lengths = Tensor::empty({idx.size(0)}, DType::i32);
  for (int64_t i = 0; i < idx.size(0); ++i) r.lengths.data<int32_t>()[i] = m.lengths.data<int32_t>()[idx.data<int32_t>()[i]];
  return r;
}

}  // namespace attn::models
