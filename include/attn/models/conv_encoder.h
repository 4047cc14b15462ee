// Convolutional source encoder (Gehring et al. 2017, "Convolutional Sequence to Sequence
// Learning", §3.2–3.4), the `encoder = "cnn"` option of Seq2SeqRNN:
//
//   x_0 = W_in (E s + p) + b_in              E s: token embeddings [B, S, E]; p: sinusoidal
//                                            positions (Vaswani et al. 2017, §3.5); x: [B, S, C]
//   x_l = √0.5 · (GLU(conv_l(drop(m ⊙ x_{l-1}))) + x_{l-1}),   l = 1 .. conv_layers
//   GLU([a; b]) = a ⊙ σ(b)                   conv_l: C -> 2C channels, kernel K (odd), "same"
//                                            padding; √0.5 keeps the residual sum's variance
//   h = m ⊙ x_L                              the encoder states [B, S, C]
//   summary = Σ_j h_j / length               mean over the real positions [B, C]
//
// m is 1 at real source positions and 0 at padding. Zeroing the padding before every
// convolution makes each real position see exactly what the convolution's own zero padding
// shows an unpadded sequence, so a padded batch gives every example the same states as
// encoding it alone. The receptive field grows by K - 1 per layer.
//
// Parameters: "in_proj.{weight,bias}" [C, E], [C]; "convs.<l>.{weight,bias}" [2C, C, K],
// [2C] (torch.nn.Conv1d names and init). Buffer "positions.pe".
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "attn/nn/conv1d.h"
#include "attn/nn/linear.h"
#include "attn/nn/positional_encoding.h"

namespace attn::models {

using ag::Var;

struct ConvEncoding {
  Var output;   // [B, S, C], zero at padded positions
  Var summary;  // [B, C]: mean of output over each sequence's real positions
};

class ConvEncoder : public nn::Module {
 public:
  // embed_dim E, channels C, conv_layers >= 1, kernel K (odd), sources up to max_len steps.
  ConvEncoder(int64_t embed_dim, int64_t channels, int64_t conv_layers, int64_t kernel, Rng& rng,
              int64_t max_len = 5000);
  // emb: [B, S, E] token embeddings; lengths: i32 [B], each in [1, S]; dropout is applied to
  // every convolution's input (identity in eval; the caller's stream keeps masks a function
  // of the training step).
  ConvEncoding forward(const Var& emb, const Tensor& lengths, const std::function<Var(const Var&)>& dropout) const;

  int64_t embed_dim, channels, kernel;
  std::shared_ptr<nn::SinusoidalPositionalEncoding> positions;
  std::shared_ptr<nn::Linear> in_proj;
  std::vector<std::shared_ptr<nn::Conv1d>> convs;
};

}  // namespace attn::models
