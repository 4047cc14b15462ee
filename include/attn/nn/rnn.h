// Multi-layer, optionally bidirectional GRU and LSTM, as torch.nn.GRU / torch.nn.LSTM, on
// the fused cells of autograd/rnn_cell.h.
//
// Parameters per layer l and direction (suffix "_reverse" for the backward direction):
//   weight_ih_l{l} [G*H, in_l], weight_hh_l{l} [G*H, H], bias_ih_l{l} [G*H], bias_hh_l{l} [G*H]
// with G = 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); in_0 = input_size, in_l = D*H above.
// All initialised U(-1/sqrt(H), 1/sqrt(H)) like PyTorch.
//
// Variable lengths: with lengths (i32 [B]), steps t >= lengths[b] neither read input nor
// change the state of sequence b (the reverse direction starts at its last real step), their
// outputs are zero, and the final states are those after each sequence's last real step —
// what PyTorch gives for a packed sequence.
#pragma once

#include <array>
#include <vector>

#include "attn/nn/module.h"

namespace attn::nn {

struct RnnOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = true;
  double dropout = 0.0;  // on the outputs of every layer but the last, in training
  bool bidirectional = false;
};

struct RnnOutput {
  Var output;  // [B, T, D*H] (batch_first) or [T, B, D*H]
  Var h_n;     // [L*D, B, H], index l*D + direction
  Var c_n;     // LSTM only, like h_n
};

class RnnBase : public Module {
 public:
  enum class Kind { gru, lstm };
  RnnBase(Kind kind, const RnnOptions& opts, Rng& rng);
  // x: [B, T, in] (batch_first) or [T, B, in]; h0 / c0: [L*D, B, H] or undefined (zeros);
  // lengths: i32 [B] or undefined (all T).
  RnnOutput forward(const Var& x, const Var& h0 = Var(), const Var& c0 = Var(),
                    const Tensor& lengths = Tensor());
  const RnnOptions& options() const { return opts_; }
  // Fixes the inter-layer dropout masks of the coming forward passes as a function of
  // (seed, step), like models::Seq2SeqModel::begin_step, so a resumed run draws the same masks.
  void begin_step(int64_t step) { stream_.counter = static_cast<uint64_t>(step) << 32; }

 private:
  Kind kind_;
  RnnOptions opts_;
  // Per (layer, direction): w_ih, w_hh, b_ih, b_hh.
  std::vector<std::array<Var, 4>> weights_;
  DropoutStream stream_;
};

class GRU : public RnnBase {
 public:
  GRU(const RnnOptions& opts, Rng& rng) : RnnBase(Kind::gru, opts, rng) {}
  RnnOutput forward(const Var& x, const Var& h0 = Var(), const Tensor& lengths = Tensor()) {
    return RnnBase::forward(x, h0, Var(), lengths);
  }
};

class LSTM : public RnnBase {
 public:
  LSTM(const RnnOptions& opts, Rng& rng) : RnnBase(Kind::lstm, opts, rng) {}
};

}  // namespace attn::nn
