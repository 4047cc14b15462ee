// TransformerStepDecoder: the KV-cached step equals the full-prefix recompute and the
// teacher-forced forward (logits and cross-attention weights), for pre- and post-norm layers
// and grouped-query heads, on padded sources of different lengths; greedy and beam search
// give the same hypotheses with and without the cache; reorder() follows beam lineages.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "../autograd/test_util.h"
#include "attn/autograd/ops.h"
#include "attn/core/error.h"
#include "attn/decode/search.h"
#include "attn/decode/transformer_step_decoder.h"

namespace attn::decode {
namespace {

using ag::Var;
using ag::testing::expect_close;
using models::TransformerSeq2Seq;
using models::TransformerSeq2SeqOptions;

constexpr int64_t kSrcVocab = 11, kTgtVocab = 13;

TransformerSeq2SeqOptions tiny(bool norm_first, int64_t kv_heads = 0) {
  TransformerSeq2SeqOptions o;
  o.src_vocab = kSrcVocab;
  o.tgt_vocab = kTgtVocab;
  o.d_model = 16;
  o.nhead = 4;
  o.num_kv_heads = kv_heads;
  o.num_encoder_layers = 2;
  o.num_decoder_layers = 2;
  o.dim_feedforward = 32;
  o.dropout = 0.1;  // must be off in decoding
  o.norm_first = norm_first;
  o.max_len = 64;
  return o;
}

// Three right-padded sources of lengths 6, 3 and 1 (PAD = 0).
Tensor padded_src() {
  return Tensor::from_vector_i32({3, 4, 5, 6, 7, 8,  //
                                  9, 10, 3, 0, 0, 0,  //
                                  5, 0, 0, 0, 0, 0},
                                 {3, 6});
}
Tensor padded_lengths() { return Tensor::from_vector_i32({6, 3, 1}, {3}); }

Tensor col(const std::vector<int32_t>& v) { return Tensor::from_vector_i32(v, {static_cast<int64_t>(v.size())}); }

class CacheEquivalence : public ::testing::TestWithParam<std::tuple<bool, int64_t>> {};

TEST_P(CacheEquivalence, CachedStepsEqualRecomputeAndTeacherForcedForward) {
  const auto [norm_first, kv_heads] = GetParam();
  Rng rng(7);
  TransformerSeq2Seq model(tiny(norm_first, kv_heads), rng);
  const Tensor src = padded_src(), len = padded_lengths();
  TransformerStepDecoder cached(model, {-1, true}), full(model, {-1, false});
  TransformerStepDecoder first_layer(model, {0, true});
  cached.start(src, len);
  full.start(src, len);
  first_layer.start(src, len);
  // Fed tokens (row-wise): <bos> then arbitrary real tokens, including <eos> (2).
  const std::vector<std::vector<int32_t>> feed = {{1, 1, 1}, {5, 7, 2}, {12, 3, 9}, {4, 4, 4}, {2, 11, 6}};
  const int64_t T = static_cast<int64_t>(feed.size());
  std::vector<int32_t> tgt_in(3 * T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < 3; ++b) tgt_in[b * T + t] = feed[t][b];
  const Tensor tgt = Tensor::from_vector_i32(tgt_in, {3, T});
  // Independent references: the training forward (teacher forcing) and the heatmap weights.
  Tensor ref_logits, ref_w_last, ref_w_first;
  {
    ag::NoGradGuard ng;
    ref_logits = ag::log_softmax(model.forward(src, len, tgt).logits, -1).value();  // [3, T, V]
    model.train();
    std::vector<Tensor> w = model.cross_attention_weights(src, tgt);  // per layer [3, H, T, S]
    ASSERT_EQ(w.size(), 2u);
    EXPECT_TRUE(model.is_training());  // restored
    ASSERT_EQ(w[1].shape(), (Shape{3, 4, T, 6}));
    ref_w_last = ag::mean(Var(w[1], false), {1}).value();  // [3, T, S]
    ref_w_first = ag::mean(Var(w[0], false), {1}).value();
    model.eval();
  }
  for (int64_t t = 0; t < T; ++t) {
    const std::string at = "step " + std::to_string(t);
    auto [lp_c, w_c] = cached.step(col(feed[t]));
    auto [lp_f, w_f] = full.step(col(feed[t]));
    auto [lp_0, w_0] = first_layer.step(col(feed[t]));
    ASSERT_EQ(lp_c.shape(), (Shape{3, kTgtVocab})) << at;
    ASSERT_EQ(w_c.shape(), (Shape{3, 6})) << at;
    expect_close(lp_c, lp_f, 2e-5, 2e-5, "log-probs cached vs recompute, " + at);
    expect_close(w_c, w_f, 1e-6, 1e-5, "weights cached vs recompute, " + at);
    expect_close(lp_c, ref_logits.select(1, t), 2e-5, 2e-5, "log-probs vs forward, " + at);
    expect_close(w_c, ref_w_last.select(1, t), 1e-6, 1e-5, "weights vs cross_attention_weights, " + at);
    expect_close(w_0, ref_w_first.select(1, t), 1e-6, 1e-5, "layer-0 weights, " + at);
    // Padded source positions get exactly zero weight; rows sum to one.
    for (int64_t b = 0; b < 3; ++b) {
      double sum = 0;
      for (int64_t s = 0; s < 6; ++s) {
        if (s >= len.get({b})) {
          EXPECT_EQ(w_c.get({b, s}), 0.f) << at << " row " << b << " pos " << s;
        }
        sum += w_c.get({b, s});
      }
      EXPECT_NEAR(sum, 1.0, 1e-5) << at;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(NormAndHeads, CacheEquivalence,
                         ::testing::Values(std::make_tuple(true, int64_t{0}), std::make_tuple(false, int64_t{0}),
                                           std::make_tuple(true, int64_t{2}), std::make_tuple(false, int64_t{1})));

TEST(TransformerStepDecoder, ReorderFollowsBeamLineage) {
  Rng rng(3);
  TransformerSeq2Seq model(tiny(true), rng);
  const Tensor src = Tensor::from_vector_i32({3, 4, 5, 6, 9, 10, 0, 0}, {2, 4});
  const Tensor len = Tensor::from_vector_i32({4, 2}, {2});
  for (bool use_cache : {true, false}) {
    TransformerStepDecoder dec(model, {-1, use_cache});
    dec.start(src, len);
    const std::vector<int32_t> tok0 = {1, 1}, rows1 = {1, 0, 1}, tok1 = {5, 6, 7}, rows2 = {2, 2, 0}, tok2 = {8, 9, 3};
    dec.step(col(tok0));
    dec.reorder(col(rows1));  // width 3 from 2 rows
    dec.step(col(tok1));
    dec.reorder(col(rows2));
    auto [lp, w] = dec.step(col(tok2));
    ASSERT_EQ(lp.shape(), (Shape{3, kTgtVocab}));
    ASSERT_EQ(w.shape(), (Shape{3, 4}));
    // Expected: a fresh decoder per final row, started on that row's source with its history.
    for (int64_t r = 0; r < 3; ++r) {
      const int32_t r1 = rows2[r], r0 = rows1[r1];
      TransformerStepDecoder fresh(model, {-1, true});
      fresh.start(Tensor(src.slice(0, r0, r0 + 1)).contiguous(), col({len.data<int32_t>()[r0]}));
      fresh.step(col({tok0[r0]}));
      fresh.step(col({tok1[r1]}));
      auto [lp_r, w_r] = fresh.step(col({tok2[r]}));
      const std::string what = std::string(use_cache ? "cached" : "recompute") + " row " + std::to_string(r);
      expect_close(lp.slice(0, r, r + 1), lp_r, 2e-5, 2e-5, what);
      expect_close(w.slice(0, r, r + 1), w_r, 1e-6, 1e-5, what);
    }
  }
}

TEST(TransformerStepDecoder, GreedyAndBeamSameWithAndWithoutCache) {
  for (bool norm_first : {true, false}) {
    Rng rng(11);
    TransformerSeq2Seq model(tiny(norm_first), rng);
    TransformerStepDecoder cached(model, {-1, true}), full(model, {-1, false});
    const Tensor src = padded_src(), len = padded_lengths();
    SearchOptions so;
    so.max_length = 7;
    auto g_c = greedy_search(cached, src, len, so);
    auto g_f = greedy_search(full, src, len, so);
    ASSERT_EQ(g_c.size(), 3u);
    ASSERT_EQ(g_f.size(), 3u);
    for (size_t b = 0; b < 3; ++b) {
      EXPECT_EQ(g_c[b].tokens, g_f[b].tokens) << "greedy row " << b;
      EXPECT_NEAR(g_c[b].log_prob, g_f[b].log_prob, 1e-4);
      ASSERT_TRUE(g_c[b].alignment.defined());
      ASSERT_EQ(g_c[b].alignment.size(1), len.get({static_cast<int64_t>(b)}));
      expect_close(g_c[b].alignment, g_f[b].alignment, 1e-6, 1e-5, "greedy alignment");
    }
    BeamOptions bo;
    bo.max_length = 7;
    bo.beam_width = 3;
    bo.n_best = 3;
    bo.alpha = 0.6;
    auto b_c = beam_search(cached, src, len, bo);
    auto b_f = beam_search(full, src, len, bo);
    ASSERT_EQ(b_c.size(), 3u);
    ASSERT_EQ(b_f.size(), 3u);
    for (size_t b = 0; b < 3; ++b) {
      ASSERT_EQ(b_c[b].size(), b_f[b].size());
      ASSERT_EQ(b_c[b].size(), 3u);
      for (size_t k = 0; k < b_c[b].size(); ++k) {
        EXPECT_EQ(b_c[b][k].tokens, b_f[b][k].tokens) << "beam source " << b << " hyp " << k;
        EXPECT_NEAR(b_c[b][k].score, b_f[b][k].score, 1e-4);
        expect_close(b_c[b][k].alignment, b_f[b][k].alignment, 1e-6, 1e-5, "beam alignment");
      }
    }
    // Beam width 1 without length normalisation is greedy.
    BeamOptions b1 = bo;
    b1.beam_width = 1;
    b1.n_best = 1;
    b1.alpha = 0;
    auto one = beam_search(cached, src, len, b1);
    for (size_t b = 0; b < 3; ++b) EXPECT_EQ(one[b][0].tokens, g_c[b].tokens);
  }
}

TEST(TransformerStepDecoder, BadArguments) {
  Rng rng(1);
  TransformerSeq2Seq model(tiny(true), rng);
  EXPECT_THROW(TransformerStepDecoder(model, {2, true}), Error);
  EXPECT_THROW(TransformerStepDecoder(model, {-2, true}), Error);
  TransformerStepDecoder dec(model);
  dec.start(padded_src(), padded_lengths());
  EXPECT_THROW(dec.step(col({1, 1})), Error);               // 2 rows for 3 sources
  EXPECT_THROW(dec.reorder(col({0, 3})), Error);            // row out of range
  EXPECT_THROW(dec.start(padded_src(), col({6, 7, 1})), Error);  // length > S
}

}  // namespace
}  // namespace attn::decode
