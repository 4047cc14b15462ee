// Greedy and beam search: on a table-driven toy decoder with known probabilities (beam beats
// greedy, length normalisation) and on a real Seq2SeqRNN (beam width 1 = greedy, batching).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <vector>

#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/models/seq2seq_rnn.h"

namespace attn::decode {
namespace {

constexpr int32_t kEos = 2, kA = 3, kB = 4;
constexpr int64_t kV = 5;  // <pad> <bos> <eos> a b

// Next-token probabilities as a function of the prefix (tokens after <bos>); the prefix
// of every row is tracked through reorder(). Attention weights: one-hot at (step mod S).
class TableDecoder : public StepDecoder {
 public:
  using Table = std::function<std::vector<double>(const std::vector<int32_t>&)>;
  explicit TableDecoder(Table table) : table_(std::move(table)) {}
  void start(const Tensor& src, const Tensor&) override {
    S_ = src.size(1);
    prefixes_.assign(static_cast<size_t>(src.size(0)), {});
    started_ = false;
  }
  void reorder(const Tensor& rows) override {
    std::vector<std::vector<int32_t>> next;
    for (int64_t i = 0; i < rows.numel(); ++i) next.push_back(prefixes_[static_cast<size_t>(rows.get({i}))]);
    prefixes_ = next;
  }
  std::pair<Tensor, Tensor> step(const Tensor& prev) override {
    const int64_t N = prev.numel();
    EXPECT_EQ(N, static_cast<int64_t>(prefixes_.size()));
    if (started_)
      for (int64_t i = 0; i < N; ++i) prefixes_[i].push_back(static_cast<int32_t>(prev.get({i})));
    started_ = true;
    ++calls;
    Tensor lp = Tensor::empty({N, kV}), w = Tensor::zeros({N, S_});
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> p = table_(prefixes_[i]);
      for (int64_t v = 0; v < kV; ++v) lp.set({i, v}, static_cast<float>(std::log(std::max(p[v], 1e-12))));
      w.set({i, static_cast<int64_t>(prefixes_[i].size()) % S_}, 1.f);
    }
    return {lp, w};
  }
  int calls = 0;

 private:
  Table table_;
  int64_t S_ = 1;
  std::vector<std::vector<int32_t>> prefixes_;
  bool started_ = false;
};

std::vector<double> probs(double eos, double a, double b) { return {0, 0, eos, a, b}; }

struct OneSource {
  Tensor src = Tensor::from_vector_i32({5, 6, 7}, {1, 3});
  Tensor len = Tensor::from_vector_i32({3}, {1});
};

// Greedy takes "a" (0.55) and then must stop cheaply; "b" (0.45) is followed by a sure <eos>.
//   greedy: a <eos>  = 0.55 * 0.34 = 0.187;   best: b <eos> = 0.45 * 0.99 = 0.4455
std::vector<double> trap(const std::vector<int32_t>& p) {
  if (p.empty()) return probs(0.0, 0.55, 0.45);
  if (p.size() == 1 && p[0] == kA) return probs(0.34, 0.33, 0.33);
  if (p.size() == 1 && p[0] == kB) return probs(0.99, 0.005, 0.005);
  return probs(0.98, 0.01, 0.01);
}

TEST(BeamSearch, FindsAHigherScoringHypothesisThanGreedy) {
  OneSource s;
  TableDecoder d(trap);
  std::vector<Hypothesis> g = greedy_search(d, s.src, s.len);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].tokens, (std::vector<int32_t>{kA}));
  EXPECT_TRUE(g[0].finished);
  EXPECT_NEAR(g[0].log_prob, std::log(0.55f) + std::log(0.34f), 1e-6);
  BeamOptions bo;
  bo.beam_width = 2;
  std::vector<std::vector<Hypothesis>> b = beam_search(d, s.src, s.len, bo);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(b[0].size(), 1u);
  EXPECT_EQ(b[0][0].tokens, (std::vector<int32_t>{kB}));
  EXPECT_NEAR(b[0][0].log_prob, std::log(0.45f) + std::log(0.99f), 1e-6);
  EXPECT_GT(b[0][0].log_prob, g[0].log_prob);
  // n_best = 2 lists both, best first.
  bo.n_best = 2;
  b = beam_search(d, s.src, s.len, bo);
  ASSERT_EQ(b[0].size(), 2u);
  EXPECT_EQ(b[0][1].tokens, (std::vector<int32_t>{kA}));
  EXPECT_GE(b[0][0].score, b[0][1].score);
}

// "<eos>" at once has p = 0.5; "a a a <eos>" has 0.5 * 0.95^3 = 0.43 — lower in total, but
// higher per step. α = 0 picks the short one, α = 1 (lp(1) = 1, lp(4) = 1.5) the long one.
std::vector<double> short_or_long(const std::vector<int32_t>& p) {
  if (p.empty()) return probs(0.5, 0.5, 0.0);
  if (p.size() < 3) return probs(0.05, 0.95, 0.0);
  return probs(0.95, 0.05, 0.0);
}

TEST(BeamSearch, LengthNormalisation) {
  OneSource s;
  TableDecoder d(short_or_long);
  BeamOptions bo;
  bo.beam_width = 2;
  bo.n_best = 2;
  bo.alpha = 0.0;
  auto r0 = beam_search(d, s.src, s.len, bo);
  ASSERT_EQ(r0[0].size(), 2u);
  EXPECT_TRUE(r0[0][0].tokens.empty());
  EXPECT_NEAR(r0[0][0].score, std::log(0.5), 1e-6);
  bo.alpha = 1.0;
  auto r1 = beam_search(d, s.src, s.len, bo);
  ASSERT_EQ(r1[0].size(), 2u);
  EXPECT_EQ(r1[0][0].tokens, (std::vector<int32_t>{kA, kA, kA}));
  const double lp = std::log(0.5f) + 3 * static_cast<double>(std::log(0.95f));
  EXPECT_NEAR(r1[0][0].log_prob, lp, 1e-5);
  EXPECT_NEAR(r1[0][0].score, lp / length_penalty(4, 1.0), 1e-6);
  EXPECT_NEAR(length_penalty(4, 1.0), 1.5, 1e-12);
  EXPECT_EQ(length_penalty(7, 0.0), 1.0);
  EXPECT_GT(r1[0][0].score, r1[0][1].score);
}

TEST(Search, AlignmentHasOneRowPerStepOverTheRealSource) {
  Tensor src = Tensor::from_vector_i32({5, 6, 7, 5, 0, 0}, {2, 3});
  Tensor len = Tensor::from_vector_i32({3, 1}, {2});
  TableDecoder d(trap);
  auto g = greedy_search(d, src, len);
  ASSERT_EQ(g.size(), 2u);
  ASSERT_EQ(g[0].alignment.shape(), (Shape{2, 3}));  // "a" then <eos>
  ASSERT_EQ(g[1].alignment.shape(), (Shape{2, 1}));
  EXPECT_EQ(g[0].alignment.get({0, 0}), 1.f);  // the toy's one-hot at step mod S
  EXPECT_EQ(g[0].alignment.get({1, 1}), 1.f);
  BeamOptions bo;
  bo.beam_width = 3;
  auto b = beam_search(d, src, len, bo);
  ASSERT_EQ(b[0][0].alignment.shape(), (Shape{2, 3}));
  ASSERT_EQ(b[1][0].alignment.shape(), (Shape{2, 1}));
}

TEST(Search, MaxLengthStopsUnfinishedHypotheses) {
  OneSource s;
  TableDecoder d([](const std::vector<int32_t>&) { return probs(0.1, 0.9, 0.0); });
  SearchOptions so;
  so.max_length = 4;
  auto g = greedy_search(d, s.src, s.len, so);
  EXPECT_FALSE(g[0].finished);
  EXPECT_EQ(g[0].tokens.size(), 4u);
  BeamOptions bo;
  bo.max_length = 4;
  bo.beam_width = 1;
  auto b = beam_search(d, s.src, s.len, bo);
  EXPECT_FALSE(b[0][0].finished);
  EXPECT_EQ(b[0][0].tokens, g[0].tokens);
}

TEST(Search, BadArgumentsThrow) {
  OneSource s;
  TableDecoder d(trap);
  BeamOptions bo;
  bo.beam_width = 0;
  EXPECT_THROW(beam_search(d, s.src, s.len, bo), Error);
  bo.beam_width = 2;
  bo.n_best = 3;
  EXPECT_THROW(beam_search(d, s.src, s.len, bo), Error);
  EXPECT_THROW(greedy_search(d, s.src, Tensor::from_vector_i32({4}, {1})), Error);
}

// A real model (random weights, so outputs are long and varied).
struct RealModel {
  models::Seq2SeqRNN model;
  explicit RealModel(models::AttentionKind kind)
      : model(
            [&] {
              models::Seq2SeqRNNConfig c;
              c.src_vocab = 9;
              c.tgt_vocab = 8;
              c.embed_dim = 6;
              c.hidden_dim = 5;
              c.decoder_dim = 10;
              c.attn_dim = 7;
              c.attention = kind;
              return c;
            }(),
            rng()) {}
  static Rng& rng() {
    static Rng r(21, 0);
    return r;
  }
};

TEST(BeamSearch, WidthOneEqualsGreedyOnARealModel) {
  for (auto kind : {models::AttentionKind::bahdanau, models::AttentionKind::location, models::AttentionKind::luong_dot}) {
    RealModel m(kind);
    RnnStepDecoder dec(m.model);
    Tensor src = Tensor::from_vector_i32({4, 5, 6, 7, 8, 3, 8, 7, 0, 0, 5, 5, 5, 5, 4}, {3, 5});
    Tensor len = Tensor::from_vector_i32({5, 3, 5}, {3});
    SearchOptions so;
    so.max_length = 12;
    auto g = greedy_search(dec, src, len, so);
    BeamOptions bo;
    bo.max_length = 12;
    bo.beam_width = 1;
    auto b = beam_search(dec, src, len, bo);
    ASSERT_EQ(g.size(), 3u);
    ASSERT_EQ(b.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_EQ(b[i].size(), 1u);
      EXPECT_EQ(b[i][0].tokens, g[i].tokens) << i;
      EXPECT_EQ(b[i][0].finished, g[i].finished);
      EXPECT_NEAR(b[i][0].log_prob, g[i].log_prob, 1e-9);
      ASSERT_EQ(b[i][0].alignment.shape(), g[i].alignment.shape());
      EXPECT_EQ(b[i][0].alignment.to_vector(), g[i].alignment.to_vector());
      ASSERT_EQ(g[i].alignment.size(1), len.get({static_cast<int64_t>(i)}));
    }
  }
}

TEST(BeamSearch, BatchedEqualsOneByOneAndBeatsGreedyOrTies) {
  RealModel m(models::AttentionKind::bahdanau);
  RnnStepDecoder dec(m.model);
  Tensor src = Tensor::from_vector_i32({4, 5, 6, 7, 3, 8, 0, 0}, {2, 4});
  Tensor len = Tensor::from_vector_i32({4, 2}, {2});
  BeamOptions bo;
  bo.beam_width = 4;
  bo.max_length = 10;
  auto both = beam_search(dec, src, len, bo);
  auto g = greedy_search(dec, src, len, bo);
  Tensor src1 = Tensor::from_vector_i32({3, 8}, {1, 2});
  Tensor len1 = Tensor::from_vector_i32({2}, {1});
  auto one = beam_search(dec, src1, len1, bo);
  ASSERT_EQ(both.size(), 2u);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(both[1][0].tokens, one[0][0].tokens);
  EXPECT_NEAR(both[1][0].log_prob, one[0][0].log_prob, 1e-5);
  for (size_t i = 0; i < 2; ++i)
    if (both[i][0].finished && g[i].finished) {
      EXPECT_GE(both[i][0].log_prob, g[i].log_prob - 1e-6);
    }
}

}  // namespace
}  // namespace attn::decode
