// Conv1d: torch.nn.Conv1d's parameters and init over ag::conv1d.
#include "attn/nn/conv1d.h"

#include <cmath>

#include "attn/autograd/conv.h"
#include "attn/core/error.h"

namespace attn::nn {

Conv1d::Conv1d(int64_t in, int64_t out, int64_t k, Rng& rng, int64_t pad, int64_t dil, bool has_bias)
    : in_channels(in), out_channels(out), kernel_size(k), padding(pad), dilation(dil) {
  ATTN_CHECK(in > 0 && out > 0 && k > 0 && dil > 0, "Conv1d: in_channels ", in, ", out_channels ", out,
             ", kernel_size ", k, " and dilation ", dil, " must be positive");
  if (pad < 0) {
    ATTN_CHECK(k % 2 == 1, "Conv1d: 'same' padding needs an odd kernel_size, got ", k);
    padding = dil * (k - 1) / 2;
  }
  // kaiming_uniform_(a=√5): gain √(2 / (1 + 5)), bound = gain √3 / √fan_in = 1 / √fan_in.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in * k));
  register_parameter("weight", &weight, uniform_init({out, in, k}, bound, rng));
  if (has_bias) register_parameter("bias", &bias, uniform_init({out}, bound, rng));
}

Var Conv1d::forward(const Var& x) const { return ag::conv1d(x, weight, bias, padding, dilation); }

}  // namespace attn::nn
