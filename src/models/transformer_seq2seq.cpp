#include "attn/models/transformer_seq2seq.h"

#include <cmath>
#include <string>

#include "attn/autograd/ops.h"
#include "attn/core/error.h"

namespace attn::models {

namespace {

nn::TransformerLayerOptions layer_opts(const TransformerSeq2SeqOptions& o) {
  nn::TransformerLayerOptions l;
  l.d_model = o.d_model;
  l.nhead = o.nhead;
  l.dim_feedforward = o.dim_feedforward;
  l.dropout = o.dropout;
  l.activation = o.activation;
  l.batch_first = true;
  l.norm_first = o.norm_first;
  return l;
}

void check_ids(const char* arg, const Tensor& ids, int64_t vocab, int64_t max_len) {
  ATTN_CHECK(ids.defined() && ids.dtype() == DType::i32 && ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
             "TransformerSeq2Seq: ", arg, " must be non-empty i32 [B, N], got ",
             ids.defined() ? shape_str(ids.shape()) : std::string("undefined"));
  ATTN_CHECK(ids.size(1) <= max_len, "TransformerSeq2Seq: ", arg, " ", shape_str(ids.shape()), " is longer than max_len ",
             max_len);
  (void)vocab;  // Embedding checks each id against its table
}

}  // namespace

TransformerEncoderStack::TransformerEncoderStack(const nn::TransformerLayerOptions& o, int64_t n, Rng& rng) {
  // torch registers "layers" (a ModuleList) before "norm".
  for (int64_t i = 0; i < n; ++i)
    layers.push_back(register_module("layers." + std::to_string(i), std::make_shared<nn::TransformerEncoderLayer>(o, rng)));
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(o.d_model, o.layer_norm_eps));
}

Var TransformerEncoderStack::forward(const Var& x, const nn::AttentionMasks& masks) {
  Var h = x;
  for (auto& layer : layers) h = layer->forward(h, masks);
  return norm->forward(h);
}

TransformerDecoderStack::TransformerDecoderStack(const nn::TransformerLayerOptions& o, int64_t n, Rng& rng) {
  for (int64_t i = 0; i < n; ++i)
    layers.push_back(register_module("layers." + std::to_string(i), std::make_shared<nn::TransformerDecoderLayer>(o, rng)));
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(o.d_model, o.layer_norm_eps));
}

Var TransformerDecoderStack::forward(const Var& y, const Var& memory, const nn::AttentionMasks& tgt_masks,
                                     const nn::AttentionMasks& memory_masks) {
  Var h = y;
  for (auto& layer : layers) h = layer->forward(h, memory, tgt_masks, memory_masks);
  return norm->forward(h);
}

TransformerCore::TransformerCore(const nn::TransformerLayerOptions& o, int64_t ne, int64_t nd, Rng& rng) {
  encoder = register_module("encoder", std::make_shared<TransformerEncoderStack>(o, ne, rng));
  decoder = register_module("decoder", std::make_shared<TransformerDecoderStack>(o, nd, rng));
}

TransformerSeq2Seq::TransformerSeq2Seq(const TransformerSeq2SeqOptions& o, Rng& rng) : opts(o) {
  ATTN_CHECK(o.src_vocab > 0 && o.tgt_vocab > 0, "TransformerSeq2Seq: src_vocab ", o.src_vocab, " and tgt_vocab ",
             o.tgt_vocab, " must be positive");
  ATTN_CHECK(o.pad_id >= 0 && o.pad_id < o.src_vocab && o.pad_id < o.tgt_vocab, "TransformerSeq2Seq: pad_id ",
             o.pad_id, " outside the vocabularies (", o.src_vocab, ", ", o.tgt_vocab, ")");
  ATTN_CHECK(o.d_model > 0 && o.nhead > 0 && o.d_model % o.nhead == 0 && o.dim_feedforward > 0 && o.max_len > 0 &&
                 o.num_encoder_layers >= 0 && o.num_decoder_layers >= 0,
             "TransformerSeq2Seq: d_model ", o.d_model, " must be a positive multiple of nhead ", o.nhead,
             "; dim_feedforward ", o.dim_feedforward, ", max_len ", o.max_len, " positive");
  // Registration order = the G2P module's state_dict order.
  src_emb = register_module("src_emb", std::make_shared<nn::Embedding>(o.src_vocab, o.d_model, rng, o.pad_id));
  tgt_emb = register_module("tgt_emb", std::make_shared<nn::Embedding>(o.tgt_vocab, o.d_model, rng, o.pad_id));
  // N(0, d^-1/2) so that emb * sqrt(d) has unit variance like the sinusoids (fairseq's init).
  const double std_emb = 1.0 / std::sqrt(static_cast<double>(o.d_model));
  for (auto* e : {src_emb.get(), tgt_emb.get()}) {
    Tensor w = nn::normal_init(e->weight.shape(), std_emb, rng);
    w.select(0, o.pad_id).fill(0.f);
    e->weight.mutable_value().copy_from(w);
  }
  pe = register_module("pe", std::make_shared<nn::SinusoidalPositionalEncoding>(o.d_model, o.max_len));
  drop = register_module("drop", std::make_shared<nn::Dropout>(o.dropout, rng));
  tf = register_module("tf", std::make_shared<TransformerCore>(layer_opts(o), o.num_encoder_layers,
                                                               o.num_decoder_layers, rng));
  out = register_module("out", std::make_shared<nn::Linear>(o.d_model, o.tgt_vocab, rng));
}

nn::AttentionMasks TransformerSeq2Seq::padding_masks(const Tensor& ids) const {
  const Tensor c = ids.contiguous();
  const int64_t B = c.size(0), N = c.size(1);
  const int32_t* p = c.data<int32_t>();
  Tensor lengths = Tensor::empty({B}, DType::i32);
  int32_t* len = lengths.data<int32_t>();
  bool right_padded = true, any_pad = false;
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = N;
    while (n > 0 && p[b * N + n - 1] == opts.pad_id) --n;  // strip trailing padding
    bool interior = false;
    for (int64_t j = 0; j < n; ++j) interior |= p[b * N + j] == opts.pad_id;
    // An all-padding row takes the padding mask too (every key hidden: zeros).
    right_padded &= !interior && n > 0;
    any_pad |= interior || n < N;
    len[b] = static_cast<int32_t>(n);
  }
  nn::AttentionMasks m;
  if (!any_pad) return m;
  if (right_padded) {
    m.key_lengths = lengths;
    return m;
  }
  m.key_padding_mask = Tensor::empty({B, N}, DType::i32);
  int32_t* k = m.key_padding_mask.data<int32_t>();
  for (int64_t i = 0; i < B * N; ++i) k[i] = p[i] == opts.pad_id ? 1 : 0;
  return m;
}

Var TransformerSeq2Seq::embed(const nn::Embedding& emb, const Tensor& ids) {
  // x = dropout(emb(ids) * sqrt(E) + pe)
  Var x = ag::mul(emb.forward(ids), std::sqrt(static_cast<double>(opts.d_model)));
  return drop->forward(pe->forward(x));
}

EncoderState TransformerSeq2Seq::encode(const Tensor& src) {
  check_ids("src", src, opts.src_vocab, opts.max_len);
  EncoderState s;
  s.mask = padding_masks(src);
  s.memory = tf->encoder->forward(embed(*src_emb, src), s.mask);
  return s;
}

Var TransformerSeq2Seq::decode(const Tensor& tgt_in, const EncoderState& enc) {
  check_ids("tgt_in", tgt_in, opts.tgt_vocab, opts.max_len);
  ATTN_CHECK(enc.memory.defined() && enc.memory.size(0) == tgt_in.size(0), "TransformerSeq2Seq: tgt_in ",
             shape_str(tgt_in.shape()), " does not match memory ",
             enc.memory.defined() ? shape_str(enc.memory.shape()) : std::string("undefined"));
  nn::AttentionMasks tm = padding_masks(tgt_in);
  tm.is_causal = true;
  Var h = tf->decoder->forward(embed(*tgt_emb, tgt_in), enc.memory, tm, enc.mask);
  return out->forward(h);
}

Var TransformerSeq2Seq::decode_step(const Tensor& tgt_in, const EncoderState& enc) {
  Var logits = decode(tgt_in, enc);  // [B, T, V]
  const int64_t T = logits.size(1);
  return ag::reshape(ag::slice(logits, 1, T - 1, T), {logits.size(0), logits.size(2)});
}

Var TransformerSeq2Seq::forward(const Tensor& src, const Tensor& tgt_in) { return decode(tgt_in, encode(src)); }

}  // namespace attn::models
