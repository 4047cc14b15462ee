// Convolutional encoder (ConvS2S encoder blocks; see the header for the equations).
#include "attn/models/conv_encoder.h"

#include <cmath>
#include <string>

#include "attn/autograd/glu.h"
#include "attn/autograd/ops.h"

namespace attn::models {

ConvEncoder::ConvEncoder(int64_t E, int64_t C, int64_t layers, int64_t K, Rng& rng, int64_t max_len)
    : embed_dim(E), channels(C), kernel(K) {
  ATTN_CHECK(E > 0 && C > 0 && layers >= 1 && K >= 1 && K % 2 == 1, "ConvEncoder: embed_dim ", E, ", channels ", C,
             " and conv_layers ", layers, " must be positive and kernel ", K, " odd and positive");
  positions = register_module("positions", std::make_shared<nn::SinusoidalPositionalEncoding>(E, max_len));
  in_proj = register_module("in_proj", std::make_shared<nn::Linear>(E, C, rng));
  for (int64_t l = 0; l < layers; ++l)
    convs.push_back(register_module("convs." + std::to_string(l),
                                    std::make_shared<nn::Conv1d>(C, 2 * C, K, rng, /*padding=*/(K - 1) / 2)));
}

ConvEncoding ConvEncoder::forward(const Var& emb, const Tensor& lengths,
                                  const std::function<Var(const Var&)>& dropout) const {
  ATTN_CHECK(emb.dim() == 3 && emb.size(2) == embed_dim, "ConvEncoder: emb must be [B, S, ", embed_dim, "], got ",
             shape_str(emb.shape()));
  const int64_t B = emb.size(0), S = emb.size(1);
  ATTN_CHECK(lengths.defined() && lengths.dtype() == DType::i32 && lengths.dim() == 1 && lengths.size(0) == B,
             "ConvEncoder: lengths must be i32 [", B, "], got ",
             lengths.defined() ? shape_str(lengths.shape()) : std::string("undefined"));
  // m [B, S, 1]: 1 at real positions; inv_len [B, 1]: 1 / length.
  Tensor len = lengths.contiguous();
  Tensor m = Tensor::zeros({B, S, 1}, DType::f64), inv_len = Tensor::empty({B, 1}, DType::f64);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t n = len.data<int32_t>()[b];
    ATTN_CHECK(n >= 1 && n <= S, "ConvEncoder: length ", n, " of sequence ", b, " not in [1, ", S, "]");
    for (int64_t j = 0; j < n; ++j) m.data<double>()[b * S + j] = 1.0;
    inv_len.data<double>()[b] = 1.0 / n;
  }
  const Tensor mask = m.to(emb.dtype());
  const double residual_scale = std::sqrt(0.5);  // ConvS2S §3.4
  // x stays zero at padding: masking every block's output (inside the fused GLU) gives the real
  // positions exactly the values of masking every block's input as the header writes it.
  Var x = ag::mul(in_proj->forward(positions->forward(emb)), Var(mask, false));  // [B, S, C]
  for (const auto& conv : convs) {
    Var h = conv->forward(dropout(x));                 // [B, S, 2C]
    x = ag::glu(h, x, residual_scale, mask);           // m ⊙ √0.5 (a ⊙ σ(b) + x)
  }
  ConvEncoding out;
  out.output = x;
  out.summary = ag::mul(ag::sum(out.output, {1}), Var(inv_len.to(emb.dtype()), false));  // [B, C]
  return out;
}

}  // namespace attn::models
