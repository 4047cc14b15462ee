#include "attn/data/batching.h"

#include <algorithm>
#include <numeric>

#include "attn/core/error.h"
#include "attn/data/vocabulary.h"

namespace attn::data {

void shuffle_indices(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

std::vector<std::vector<int64_t>> make_train_batches(const std::vector<SeqPair>& examples,
                                                     int64_t batch_size, Rng& rng) {
  ATTN_CHECK(batch_size > 0, "make_train_batches: batch_size must be > 0, got ", batch_size);
  const int64_t n = static_cast<int64_t>(examples.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  shuffle_indices(order, rng);
  const int64_t chunk = batch_size * 50;
  std::vector<std::vector<int64_t>> batches;
  for (int64_t i = 0; i < n; i += chunk) {
    auto b = order.begin() + i, e = order.begin() + std::min(n, i + chunk);
    std::stable_sort(b, e, [&](int64_t x, int64_t y) {
      const auto& ex = examples[static_cast<size_t>(x)];
      const auto& ey = examples[static_cast<size_t>(y)];
      if (ex.src.size() != ey.src.size()) return ex.src.size() < ey.src.size();
      return ex.tgt.size() < ey.tgt.size();
    });
    for (auto j = b; j < e; j += std::min<int64_t>(batch_size, e - j)) {
      batches.emplace_back(j, j + std::min<int64_t>(batch_size, e - j));
    }
  }
  // Shuffle the batches themselves (Fisher-Yates over batch positions).
  for (size_t i = batches.size(); i > 1; --i) {
    std::swap(batches[i - 1], batches[static_cast<size_t>(rng.below(i))]);
  }
  return batches;
}

std::vector<std::vector<int64_t>> make_eval_batches(const std::vector<SeqPair>& examples,
                                                    int64_t batch_size, bool sort_by_length) {
  ATTN_CHECK(batch_size > 0, "make_eval_batches: batch_size must be > 0, got ", batch_size);
  const int64_t n = static_cast<int64_t>(examples.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (sort_by_length) {
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
      return examples[static_cast<size_t>(x)].src.size() < examples[static_cast<size_t>(y)].src.size();
    });
  }
  std::vector<std::vector<int64_t>> batches;
  for (int64_t i = 0; i < n; i += batch_size) {
    batches.emplace_back(order.begin() + i, order.begin() + std::min(n, i + batch_size));
  }
  return batches;
}

Batch collate(const std::vector<SeqPair>& examples, const std::vector<int64_t>& indices) {
  ATTN_CHECK(!indices.empty(), "collate: empty batch (indices has size 0)");
  const int64_t B = static_cast<int64_t>(indices.size());
  int64_t S = 0, T = 0;
  for (int64_t i : indices) {
    ATTN_CHECK(i >= 0 && i < static_cast<int64_t>(examples.size()), "collate: index ", i,
               " out of range for ", examples.size(), " examples");
    const auto& e = examples[static_cast<size_t>(i)];
    ATTN_CHECK(!e.src.empty(), "collate: example ", i, " has an empty source");
    S = std::max<int64_t>(S, static_cast<int64_t>(e.src.size()));
    T = std::max<int64_t>(T, static_cast<int64_t>(e.tgt.size()) + 1);
  }
  Batch b;
  b.src = Tensor::zeros({B, S}, DType::i32);
  b.tgt_in = Tensor::zeros({B, T}, DType::i32);
  b.tgt_out = Tensor::zeros({B, T}, DType::i32);
  b.src_lengths = Tensor::zeros({B}, DType::i32);
  b.tgt_lengths = Tensor::zeros({B}, DType::i32);
  b.indices = indices;
  int32_t* src = b.src.data<int32_t>();
  int32_t* tin = b.tgt_in.data<int32_t>();
  int32_t* tout = b.tgt_out.data<int32_t>();
  for (int64_t r = 0; r < B; ++r) {
    const auto& e = examples[static_cast<size_t>(indices[static_cast<size_t>(r)])];
    const int64_t ns = static_cast<int64_t>(e.src.size()), nt = static_cast<int64_t>(e.tgt.size());
    std::copy(e.src.begin(), e.src.end(), src + r * S);
    tin[r * T] = Vocabulary::kBos;
    std::copy(e.tgt.begin(), e.tgt.end(), tin + r * T + 1);
    std::copy(e.tgt.begin(), e.tgt.end(), tout + r * T);
    tout[r * T + nt] = Vocabulary::kEos;
    b.src_lengths.data<int32_t>()[r] = static_cast<int32_t>(ns);
    b.tgt_lengths.data<int32_t>()[r] = static_cast<int32_t>(nt + 1);
    b.n_tokens += ns + nt + 1;
  }
  return b;
}

Batch collate_sources(const std::vector<std::vector<int32_t>>& sources) {
  ATTN_CHECK(!sources.empty(), "collate_sources: empty batch (sources has size 0)");
  const int64_t B = static_cast<int64_t>(sources.size());
  int64_t S = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    ATTN_CHECK(!sources[i].empty(), "collate_sources: source ", i, " is empty");
    S = std::max<int64_t>(S, static_cast<int64_t>(sources[i].size()));
  }
  Batch b;
  b.src = Tensor::zeros({B, S}, DType::i32);
  b.src_lengths = Tensor::zeros({B}, DType::i32);
  for (int64_t r = 0; r < B; ++r) {
    const auto& s = sources[static_cast<size_t>(r)];
    std::copy(s.begin(), s.end(), b.src.data<int32_t>() + r * S);
    b.src_lengths.data<int32_t>()[r] = static_cast<int32_t>(s.size());
    b.n_tokens += static_cast<int64_t>(s.size());
    b.indices.push_back(r);
  }
  return b;
}

}  // namespace attn::data
