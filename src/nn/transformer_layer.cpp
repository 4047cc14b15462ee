#include "attn/nn/transformer_layer.h"

#include <algorithm>

#include "attn/autograd/ops.h"

namespace attn::nn {

namespace {
MultiheadAttentionOptions mha_opts(const TransformerLayerOptions& o) {
  MultiheadAttentionOptions m;
  m.dropout = o.dropout;
  m.batch_first = o.batch_first;
  m.num_kv_heads = o.num_kv_heads;
  return m;
}
Var activate(Activation a, const Var& x) { return a == Activation::relu ? ag::relu(x) : ag::gelu(x); }

// dropout(activation(linear1(x))): with ReLU while training, one fused op
// (ag::linear_relu_dropout, the same mask as Dropout::forward would draw).
Var ff_hidden(const TransformerLayerOptions& o, const Linear& linear1, Dropout& dropout, const Var& x) {
  if (o.activation == Activation::relu && dropout.is_training() && dropout.p > 0 && linear1.bias.defined()) {
    const int64_t n = x.numel() / std::max<int64_t>(linear1.in_features, 1) * linear1.out_features;
    return ag::linear_relu_dropout(x, linear1.weight, linear1.bias, dropout.p, dropout.stream.seed,
                                   dropout.stream.take(n));
  }
  return dropout.forward(activate(o.activation, linear1.forward(x)));
}
}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& o, Rng& rng) : opts(o) {
  // Registration order = torch's state_dict order.
  self_attn = register_module("self_attn", std::make_shared<MultiheadAttention>(o.d_model, o.nhead, rng, mha_opts(o)));
  linear1 = register_module("linear1", std::make_shared<Linear>(o.d_model, o.dim_feedforward, rng));
  dropout = register_module("dropout", std::make_shared<Dropout>(o.dropout, rng));
  linear2 = register_module("linear2", std::make_shared<Linear>(o.dim_feedforward, o.d_model, rng));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(o.dropout, rng));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(o.dropout, rng));
}

// The blocks without their last dropout: it is fused with the residual add
// (Dropout::forward_add), and ReLU with the inner dropout (Dropout::forward_relu).
Var TransformerEncoderLayer::sa_block(const Var& x, const AttentionMasks& m) {
  return self_attn->forward(x, x, x, m).out;
}

Var TransformerEncoderLayer::ff_block(const Var& x) { return linear2->forward(ff_hidden(opts, *linear1, *dropout, x)); }

Var TransformerEncoderLayer::forward(const Var& src, const AttentionMasks& m) {
  Var x = src;
  if (opts.norm_first) {
    x = dropout1->forward_add(x, sa_block(norm1->forward(x), m));
    return dropout2->forward_add(x, ff_block(norm2->forward(x)));
  }
  x = norm1->forward(dropout1->forward_add(x, sa_block(x, m)));
  return norm2->forward(dropout2->forward_add(x, ff_block(x)));
}

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& o, Rng& rng) : opts(o) {
  self_attn = register_module("self_attn", std::make_shared<MultiheadAttention>(o.d_model, o.nhead, rng, mha_opts(o)));
  multihead_attn =
      register_module("multihead_attn", std::make_shared<MultiheadAttention>(o.d_model, o.nhead, rng, mha_opts(o)));
  linear1 = register_module("linear1", std::make_shared<Linear>(o.d_model, o.dim_feedforward, rng));
  dropout = register_module("dropout", std::make_shared<Dropout>(o.dropout, rng));
  linear2 = register_module("linear2", std::make_shared<Linear>(o.dim_feedforward, o.d_model, rng));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  norm3 = register_module("norm3", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(o.dropout, rng));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(o.dropout, rng));
  dropout3 = register_module("dropout3", std::make_shared<Dropout>(o.dropout, rng));
}

Var TransformerDecoderLayer::ff_block(const Var& x) {  // without dropout3 (fused with the residual add)
  return linear2->forward(ff_hidden(opts, *linear1, *dropout, x));
}

template <typename SelfAttn, typename CrossAttn>
Var TransformerDecoderLayer::residual_blocks(const Var& tgt, const SelfAttn& sa, const CrossAttn& ca) {
  Var x = tgt;
  if (opts.norm_first) {
    x = dropout1->forward_add(x, sa(norm1->forward(x)));
    x = dropout2->forward_add(x, ca(norm2->forward(x)));
    return dropout3->forward_add(x, ff_block(norm3->forward(x)));
  }
  x = norm1->forward(dropout1->forward_add(x, sa(x)));
  x = norm2->forward(dropout2->forward_add(x, ca(x)));
  return norm3->forward(dropout3->forward_add(x, ff_block(x)));
}

Var TransformerDecoderLayer::forward(const Var& tgt, const Var& memory, const AttentionMasks& tm,
                                     const AttentionMasks& mm, Tensor* cross_weights) {
  auto sa = [&](const Var& x) { return self_attn->forward(x, x, x, tm).out; };
  auto ca = [&](const Var& x) {
    MhaOutput o = multihead_attn->forward(x, memory, memory, mm, cross_weights != nullptr, false);
    if (cross_weights) *cross_weights = o.weights.to(DType::f32);
    return o.out;
  };
  return residual_blocks(tgt, sa, ca);
}

DecoderLayerCache TransformerDecoderLayer::start_cache(const Var& memory, const Tensor& memory_key_lengths) {
  DecoderLayerCache c;
  c.cross_attn = multihead_attn->project_kv(memory, memory, memory_key_lengths);
  return c;
}

Var TransformerDecoderLayer::forward_step(const Var& tgt, DecoderLayerCache& cache, Tensor* cross_weights) {
  ag::NoGradGuard no_grad;
  auto sa = [&](const Var& x) { return self_attn->forward_step(x, cache.self_attn, /*append=*/true).out; };
  auto ca = [&](const Var& x) {
    MhaOutput o = multihead_attn->forward_step(x, cache.cross_attn, /*append=*/false, cross_weights != nullptr, false);
    if (cross_weights) *cross_weights = o.weights.to(DType::f32);
    return o.out;
  };
  return residual_blocks(tgt, sa, ca);
}

}  // namespace attn::nn
