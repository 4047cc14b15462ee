// Incremental attention (KvCache): MultiheadAttention::forward_step and
// TransformerDecoderLayer::forward_step against the full forward over the whole prefix —
// batch-first or not, grouped-query heads, cross-attention with kdim / vdim != E and key
// lengths, pre- and post-norm layers, reorder.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nn_util.h"
#include "attn/autograd/ops.h"
#include "attn/core/error.h"
#include "attn/nn/multihead_attention.h"
#include "attn/nn/transformer_layer.h"

namespace attn::nn {
namespace {

using testing::expect_close;

Var f32(const Shape& shape, Rng& rng) { return Var(ag::random_tensor(shape, rng, -1.0, 1.0, DType::f32), false); }

// x: [B, T, E] (batch first) -> positions [t, t+1) in the module's layout.
Var position(const Var& x, int64_t t, bool batch_first) {
  Var p = ag::slice(x, 1, t, t + 1);
  return batch_first ? p : ag::transpose(p, 0, 1);
}

TEST(KvCache, SelfAttentionStepsEqualCausalForward) {
  for (bool bf : {true, false})
    for (int64_t kv : {int64_t{0}, int64_t{2}}) {
      Rng rng(1);
      MultiheadAttentionOptions o;
      o.batch_first = bf;
      o.num_kv_heads = kv;
      MultiheadAttention mha(16, 4, rng, o);
      mha.eval();
      const int64_t B = 3, T = 5;
      Var x = f32({B, T, 16}, rng);  // batch first
      Var xin = bf ? x : ag::transpose(x, 0, 1);
      AttentionMasks causal;
      causal.is_causal = true;
      MhaOutput full = mha.forward(xin, xin, xin, causal, true, false);  // weights [B, H, T, T]
      Tensor ref = (bf ? full.out : ag::transpose(full.out, 0, 1)).value();  // [B, T, E]
      KvCache cache;
      for (int64_t t = 0; t < T; ++t) {
        MhaOutput s = mha.forward_step(position(x, t, bf), cache, true, true, false);
        const std::string what = std::string(bf ? "batch_first" : "seq_first") + " kv " + std::to_string(kv) +
                                 " step " + std::to_string(t);
        ASSERT_EQ(cache.length(), t + 1) << what;
        Tensor out = (bf ? s.out : ag::transpose(s.out, 0, 1)).value();  // [B, 1, E]
        expect_close(out, ref.slice(1, t, t + 1), 1e-5, 1e-5, what);
        ASSERT_EQ(s.weights.shape(), (Shape{B, 4, 1, t + 1})) << what;
        expect_close(s.weights, full.weights.slice(2, t, t + 1).slice(3, 0, t + 1), 1e-6, 1e-5, what + " weights");
      }
      EXPECT_EQ(cache.k.shape(), (Shape{B, kv == 0 ? 4 : kv, T, 4}));
    }
}

TEST(KvCache, CrossAttentionWithKdimVdimAndKeyLengths) {
  Rng rng(2);
  MultiheadAttentionOptions o;
  o.kdim = 6;
  o.vdim = 5;
  MultiheadAttention mha(8, 2, rng, o);
  mha.eval();
  Var mem_k = f32({2, 4, 6}, rng), mem_v = f32({2, 4, 5}, rng), q = f32({2, 1, 8}, rng);
  const Tensor lengths = Tensor::from_vector_i32({4, 2}, {2});
  AttentionMasks m;
  m.key_lengths = lengths;
  MhaOutput full = mha.forward(q, mem_k, mem_v, m, true);
  KvCache cache = mha.project_kv(mem_k, mem_v, lengths);
  ASSERT_EQ(cache.k.shape(), (Shape{2, 2, 4, 4}));
  MhaOutput step = mha.forward_step(q, cache, false, true);
  expect_close(step.out.value(), full.out.value(), 1e-6, 1e-5, "out");
  expect_close(step.weights, full.weights, 1e-6, 1e-5, "weights");
  EXPECT_EQ(step.weights.get({1, 0, 3}), 0.f);
  EXPECT_EQ(cache.length(), 4);  // unchanged
  // Appending needs kdim = vdim = E; an empty cache cannot be attended.
  EXPECT_THROW(mha.forward_step(q, cache, true), Error);
  KvCache empty;
  EXPECT_THROW(mha.forward_step(q, empty, false), Error);
  EXPECT_THROW(mha.forward_step(f32({2, 2, 8}, rng), cache, false), Error);  // two positions
  EXPECT_THROW(mha.project_kv(mem_k, mem_v, Tensor::from_vector_i32({4}, {1})), Error);
}

TEST(KvCache, ReorderGathersRows) {
  Rng rng(3);
  MultiheadAttention mha(8, 2, rng);
  mha.eval();
  Var x = f32({2, 3, 8}, rng);
  KvCache c;
  for (int64_t t = 0; t < 3; ++t) mha.forward_step(ag::slice(x, 1, t, t + 1), c, true);
  c.key_lengths = Tensor::from_vector_i32({3, 2}, {2});
  const Tensor k = c.k.clone();
  c.reorder(Tensor::from_vector_i32({1, 1, 0}, {3}));
  ASSERT_EQ(c.k.shape(), (Shape{3, 2, 3, 4}));
  expect_close(c.k.select(0, 0), k.select(0, 1), 0, 0, "row 0");
  expect_close(c.k.select(0, 1), k.select(0, 1), 0, 0, "row 1");
  expect_close(c.k.select(0, 2), k.select(0, 0), 0, 0, "row 2");
  EXPECT_EQ(c.key_lengths.to_vector(), (std::vector<float>{2, 2, 3}));
  EXPECT_THROW(c.reorder(Tensor::from_vector_i32({3}, {1})), Error);
  KvCache empty;
  empty.reorder(Tensor::from_vector_i32({0, 0}, {2}));  // nothing cached: stays empty
  EXPECT_EQ(empty.rows(), 0);
}

TEST(KvCache, DecoderLayerStepsEqualFullForward) {
  for (bool norm_first : {true, false})
    for (Activation act : {Activation::relu, Activation::gelu}) {
      Rng rng(4);
      TransformerLayerOptions o;
      o.d_model = 16;
      o.nhead = 4;
      o.dim_feedforward = 24;
      o.norm_first = norm_first;
      o.activation = act;
      TransformerDecoderLayer layer(o, rng);
      layer.eval();
      const int64_t B = 2, T = 4, S = 5;
      Var tgt = f32({B, T, 16}, rng), memory = f32({B, S, 16}, rng);
      const Tensor lengths = Tensor::from_vector_i32({5, 3}, {2});
      AttentionMasks tm, mm;
      tm.is_causal = true;
      mm.key_lengths = lengths;
      Tensor full_w;
      Tensor full = layer.forward(tgt, memory, tm, mm, &full_w).value();  // [B, T, E]
      ASSERT_EQ(full_w.shape(), (Shape{B, 4, T, S}));
      DecoderLayerCache cache = layer.start_cache(memory, lengths);
      for (int64_t t = 0; t < T; ++t) {
        Tensor w;
        Tensor y = layer.forward_step(ag::slice(tgt, 1, t, t + 1), cache, &w).value();
        const std::string what = std::string(norm_first ? "pre" : "post") + "-norm step " + std::to_string(t);
        expect_close(y, full.slice(1, t, t + 1), 1e-5, 1e-5, what);
        expect_close(w, full_w.slice(2, t, t + 1), 1e-6, 1e-5, what + " weights");
      }
    }
}

}  // namespace
}  // namespace attn::nn
