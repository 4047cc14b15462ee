// 1-D convolution (cross-correlation, as torch.nn.functional.conv1d) on channels-last
// activations, as one GEMM per kernel tap.
#pragma once

#include <cstdint>

#include "attn/autograd/var.h"

namespace attn::ag {

// x: [B, L, Cin] (channels last: the [batch, time, features] layout of every sequence model
// here; torch's [B, Cin, L] is x.transpose(1, 2)), weight: [Cout, Cin, K] (torch.nn.Conv1d's
// layout), bias: [Cout] (optional; undefined Var = none) -> y: [B, Lout, Cout] with stride 1,
// Lout = L + 2 padding - dilation (K - 1) and
//   y[b, t, o] = bias[o] + Σ_{c, k} weight[o, c, k] x[b, t + k dilation - padding, c]
// (x is zero outside [0, L)). padding = dilation (K - 1) / 2 with odd K keeps the length.
// Forward, and each of the backward's products (dx, dweight), is K shifted GEMMs accumulating
// into the result, one per tap k: y[b, t, :] += x[b, t + k dilation - padding, :] · W_kᵀ over
// the rows where the tap lands inside x; with Lout == L each tap is one GEMM over the whole
// batch. No unfolded copy of the input is made (its memory would be K times x's).
Var conv1d(const Var& x, const Var& weight, const Var& bias = Var(), int64_t padding = 0, int64_t dilation = 1);

}  // namespace attn::ag
