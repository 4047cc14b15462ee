// 1-D convolution layer, torch.nn.Conv1d (stride 1, zero padding), on channels-last input.
// Parameters "weight" [out, in, K] and "bias" [out], with torch's default init:
// kaiming_uniform_(a = √5) on the weight, which is U(±1/√fan_in) with fan_in = in · K, and
// bias ~ U(±1/√fan_in).
#pragma once

#include "attn/nn/module.h"

namespace attn::nn {

class Conv1d : public Module {
 public:
  // padding < 0 means "same": dilation (K - 1) / 2 (K must then be odd).
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Rng& rng, int64_t padding = 0,
         int64_t dilation = 1, bool bias = true);
  // x: [B, L, in] -> [B, L + 2 padding - dilation (K - 1), out]  (ag::conv1d; torch's
  // Conv1d on x.transpose(1, 2), transposed back)
  Var forward(const Var& x) const;
  Var weight, bias;  // bias undefined when constructed without
  int64_t in_channels, out_channels, kernel_size, padding, dilation;
};

}  // namespace attn::nn
