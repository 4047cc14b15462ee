// Linear, Embedding, LayerNorm, Dropout, positional encodings.
#include <cmath>

#include "attn/autograd/ops.h"
#include "attn/nn/dropout.h"
#include "attn/nn/embedding.h"
#include "attn/nn/layer_norm.h"
#include "attn/nn/linear.h"
#include "attn/nn/positional_encoding.h"

namespace attn::nn {

Linear::Linear(int64_t in, int64_t out, Rng& rng, bool has_bias) : in_features(in), out_features(out) {
  ATTN_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in ", in, ", out ", out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  register_parameter("weight", &weight, uniform_init({out, in}, bound, rng));
  if (has_bias) register_parameter("bias", &bias, uniform_init({out}, bound, rng));
}

Var Linear::forward(const Var& x) const { return ag::linear(x, weight, bias); }

Embedding::Embedding(int64_t num, int64_t dim, Rng& rng, std::optional<int64_t> pad)
    : num_embeddings(num), embedding_dim(dim), padding_idx(pad) {
  ATTN_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got ", num, " x ", dim);
  Tensor w = normal_init({num, dim}, 1.0, rng);
  if (pad) {
    int64_t p = *pad < 0 ? *pad + num : *pad;
    ATTN_CHECK(p >= 0 && p < num, "Embedding: padding_idx ", *pad, " out of range for ", num, " embeddings");
    padding_idx = p;
    w.select(0, p).fill(0.f);
  }
  register_parameter("weight", &weight, w);
}

Var Embedding::forward(const Tensor& ids) const { return ag::embedding(weight, ids, padding_idx); }

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : dim(d), eps(e) {
  if (affine) {
    register_parameter("weight", &weight, Tensor::full({d}, 1.f));
    register_parameter("bias", &bias, Tensor::zeros({d}));
  }
}

Var LayerNorm::forward(const Var& x) const {
  ATTN_CHECK(x.dim() >= 1 && x.size(-1) == dim, "LayerNorm: input ", shape_str(x.shape()),
             " does not end in ", dim);
  return ag::layer_norm(x, weight, bias, eps);
}

Dropout::Dropout(double rate, Rng& rng) : p(rate) {
  ATTN_CHECK(rate >= 0 && rate < 1, "Dropout: p ", rate, " must be in [0, 1)");
  stream.seed = rng.next_u64();
}

Var Dropout::forward(const Var& x) {
  if (!is_training() || p == 0) return x;
  return ag::dropout(x, p, stream.seed, stream.take(x.numel()));
}

Var Dropout::forward_add(const Var& residual, const Var& x) {
  if (!is_training() || p == 0) return residual + x;
  return ag::dropout_add(residual, x, p, stream.seed, stream.take(x.numel()));
}

Var Dropout::forward_relu(const Var& x) {
  if (!is_training() || p == 0) return ag::relu(x);
  return ag::relu_dropout(x, p, stream.seed, stream.take(x.numel()));
}

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(int64_t d, int64_t len) : dim(d), max_len(len) {
  pe = Tensor::empty({len, d});
  float* p = pe.data<float>();
  for (int64_t pos = 0; pos < len; ++pos)
    for (int64_t i = 0; i < d; i += 2) {
      const double freq = std::exp(-std::log(10000.0) * static_cast<double>(i) / static_cast<double>(d));
      p[pos * d + i] = static_cast<float>(std::sin(static_cast<double>(pos) * freq));
      if (i + 1 < d) p[pos * d + i + 1] = static_cast<float>(std::cos(static_cast<double>(pos) * freq));
    }
  register_buffer("pe", &pe);
}

namespace {
void check_positions(const char* op, const Var& x, int64_t dim, int64_t offset, int64_t max_len) {
  ATTN_CHECK(x.dim() == 3 && x.size(2) == dim, op, ": x must be [B, N, ", dim, "], got ", shape_str(x.shape()));
  ATTN_CHECK(offset >= 0 && offset + x.size(1) <= max_len, op, ": positions [", offset, ", ", offset + x.size(1),
             ") exceed max_len ", max_len);
}
}  // namespace

Var SinusoidalPositionalEncoding::forward(const Var& x, int64_t offset) const {
  check_positions("SinusoidalPositionalEncoding", x, dim, offset, max_len);
  Var pos(pe.slice(0, offset, offset + x.size(1)).to(x.dtype()).contiguous(), false);
  return ag::add(x, pos);
}

LearnedPositionalEncoding::LearnedPositionalEncoding(int64_t d, int64_t len, Rng& rng) : dim(d), max_len(len) {
  register_parameter("weight", &weight, normal_init({len, d}, 1.0, rng));
}

Var LearnedPositionalEncoding::forward(const Var& x, int64_t offset) const {
  check_positions("LearnedPositionalEncoding", x, dim, offset, max_len);
  return ag::add(x, ag::slice(weight, 0, offset, offset + x.size(1)));
}

}  // namespace attn::nn
