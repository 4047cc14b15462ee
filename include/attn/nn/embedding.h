// Embedding table, torch.nn.Embedding. Parameter "weight" [num, dim] ~ N(0, 1); the
// padding_idx row starts at zero and never receives a gradient.
#pragma once

#include <optional>

#include "attn/nn/module.h"

namespace attn::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Rng& rng,
            std::optional<int64_t> padding_idx = std::nullopt);
  // ids: i32 [...] -> [..., dim]
  Var forward(const Tensor& ids) const;
  Var weight;
  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;
};

}  // namespace attn::nn
