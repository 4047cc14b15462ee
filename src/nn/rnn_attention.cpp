// Bahdanau and Luong attention modules over the attention op.
#include "attn/autograd/ops.h"
#include "attn/nn/bahdanau_attention.h"
#include "attn/nn/luong_attention.h"

namespace attn::nn {

namespace {

// Runs the op with H = 1: query [B, Nq, Dq] or [B, Dq], keys [B, Nk, Dk], values [B, Nk, Dv].
AttentionContext attend(const char* op, const Var& query, const Var& keys, const Var& values_in,
                        const Tensor& key_lengths, ScoreFn fn, const ag::AttentionInputs& params) {
  const Var& values = values_in.defined() ? values_in : keys;
  ATTN_CHECK(query.dim() == 2 || query.dim() == 3, op, ": query ", shape_str(query.shape()),
             " expected [B, Nq, Dq] or [B, Dq]");
  ATTN_CHECK(keys.dim() == 3 && values.dim() == 3 && keys.size(0) == query.size(0) &&
                 values.size(0) == query.size(0) && values.size(1) == keys.size(1),
             op, ": keys ", shape_str(keys.shape()), " / values ", shape_str(values.shape()),
             " do not fit query ", shape_str(query.shape()));
  const bool step = query.dim() == 2;
  const int64_t B = query.size(0), Nq = step ? 1 : query.size(1), Nk = keys.size(1);
  Var q = ag::reshape(query, {B, 1, Nq, query.size(-1)});
  Var k = ag::reshape(keys, {B, 1, Nk, keys.size(2)});
  Var v = ag::reshape(values, {B, 1, Nk, values.size(2)});
  ag::AttentionInputs in = params;
  in.key_lengths = key_lengths;
  AttentionOptions o;
  o.score = fn;
  o.need_weights = true;
  ag::AttentionResult r = ag::attention(q, k, v, in, o);
  AttentionContext c;
  c.context = step ? ag::reshape(r.out, {B, values.size(2)}) : ag::reshape(r.out, {B, Nq, values.size(2)});
  c.weights = step ? r.weights.reshape({B, Nk}) : r.weights.reshape({B, Nq, Nk});
  return c;
}

}  // namespace

BahdanauAttention::BahdanauAttention(int64_t query_dim, int64_t key_dim, int64_t attn_dim, Rng& rng) {
  Wa = register_module("Wa", std::make_shared<Linear>(query_dim, attn_dim, rng, false));
  Ua = register_module("Ua", std::make_shared<Linear>(key_dim, attn_dim, rng, false));
  Va = register_module("Va", std::make_shared<Linear>(attn_dim, 1, rng, false));
}

AttentionContext BahdanauAttention::forward(const Var& query, const Var& keys, const Var& values,
                                            const Tensor& key_lengths) {
  ag::AttentionInputs p;
  p.wq = Wa->weight;
  p.wk = Ua->weight;
  p.va = ag::reshape(Va->weight, {Va->weight.size(1)});
  return attend("BahdanauAttention", query, keys, values, key_lengths, ScoreFn::additive, p);
}

LuongAttention::LuongAttention(LuongScore s, int64_t query_dim, int64_t key_dim, Rng& rng, int64_t attn_dim)
    : score(s) {
  if (s == LuongScore::dot)
    ATTN_CHECK(query_dim == key_dim, "LuongAttention: dot score needs query_dim == key_dim, got ", query_dim,
               " and ", key_dim);
  if (s == LuongScore::general) attn = register_module("attn", std::make_shared<Linear>(key_dim, query_dim, rng, false));
  if (s == LuongScore::concat) {
    ATTN_CHECK(attn_dim > 0, "LuongAttention: concat score needs attn_dim > 0");
    attn = register_module("attn", std::make_shared<Linear>(query_dim + key_dim, attn_dim, rng, false));
    v = register_module("v", std::make_shared<Linear>(attn_dim, 1, rng, false));
  }
}

AttentionContext LuongAttention::forward(const Var& query, const Var& keys, const Var& values,
                                         const Tensor& key_lengths) {
  ag::AttentionInputs p;
  switch (score) {
    case LuongScore::dot:
      return attend("LuongAttention", query, keys, values, key_lengths, ScoreFn::dot, p);
    case LuongScore::general:
      p.w = attn->weight;  // qᵀ W k with W = attn.weight [Dq, Dk]
      return attend("LuongAttention", query, keys, values, key_lengths, ScoreFn::general, p);
    case LuongScore::concat: {
      const int64_t Dq = query.size(-1), A = attn->weight.size(0);
      ATTN_CHECK(attn->weight.size(1) > Dq, "LuongAttention: query ", shape_str(query.shape()),
                 " does not fit attn.weight ", shape_str(attn->weight.shape()));
      // W_a [h_t; h_s] = W_q h_t + W_k h_s with W_a = [W_q | W_k]
      p.wq = ag::slice(attn->weight, 1, 0, Dq);
      p.wk = ag::slice(attn->weight, 1, Dq, attn->weight.size(1));
      p.va = ag::reshape(v->weight, {A});
      return attend("LuongAttention", query, keys, values, key_lengths, ScoreFn::additive, p);
    }
  }
  fail("LuongAttention: unknown score");
}

}  // namespace attn::nn
