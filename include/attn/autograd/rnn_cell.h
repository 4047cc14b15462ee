// Fused GRU and LSTM cells with PyTorch's gate order and equations (torch.nn.GRUCell,
// torch.nn.LSTMCell). The input projection gi = x W_ihᵀ + b_ih is passed in precomputed, so a
// layer runs it as one GEMM over all time steps; each step then does one GEMM h W_hhᵀ for all
// gates and one fused element-wise pass.
//
// `active` (optional, i32 [B]): rows with 0 keep their state unchanged (padded steps of
// shorter sequences) and pass the state gradient straight through.
#pragma once

#include <utility>

#include "attn/autograd/var.h"

namespace attn::ag {

// GRU, gates r, z, n:
//   r = σ(gi_r + W_hr h + b_hr)   z = σ(gi_z + W_hz h + b_hz)
//   n = tanh(gi_n + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
// gi: [B, 3H], h: [B, H], w_hh: [3H, H], b_hh: [3H] or undefined -> h': [B, H]
Var gru_cell(const Var& gi, const Var& h, const Var& w_hh, const Var& b_hh, const Tensor& active = Tensor());

// LSTM, gates i, f, g, o:
//   [i f g o] = gi + W_hh h + b_hh;  i, f, o = σ(.), g = tanh(.)
//   c' = f * c + i * g;  h' = o * tanh(c')
// gi: [B, 4H], h, c: [B, H], w_hh: [4H, H], b_hh: [4H] or undefined -> (h', c'), each [B, H]
std::pair<Var, Var> lstm_cell(const Var& gi, const Var& h, const Var& c, const Var& w_hh, const Var& b_hh,
                              const Tensor& active = Tensor());

// Whole cells from x: gi = linear(x, w_ih, b_ih), then the fused step.
Var gru_cell(const Var& x, const Var& h, const Var& w_ih, const Var& w_hh, const Var& b_ih, const Var& b_hh);
std::pair<Var, Var> lstm_cell(const Var& x, const Var& h, const Var& c, const Var& w_ih, const Var& w_hh,
                              const Var& b_ih, const Var& b_hh);

}  // namespace attn::ag
