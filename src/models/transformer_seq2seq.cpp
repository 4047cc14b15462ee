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
  l.num_kv_heads = o.num_kv_heads;
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

const char* activation_name(nn::Activation a) { return a == nn::Activation::relu ? "relu" : "gelu"; }

// Key lengths [B] i32 checked against src [B, S]: each in [1, S].
Tensor checked_lengths(const Tensor& src, const Tensor& src_lengths) {
  const int64_t B = src.size(0), S = src.size(1);
  ATTN_CHECK(src_lengths.defined() && src_lengths.dtype() == DType::i32 && src_lengths.shape() == Shape{B},
             "TransformerSeq2Seq: src_lengths must be i32 [", B, "] for src ", shape_str(src.shape()), ", got ",
             src_lengths.defined() ? shape_str(src_lengths.shape()) : std::string("undefined"));
  Tensor l = src_lengths.contiguous();
  for (int64_t b = 0; b < B; ++b) {
    const int32_t n = l.data<int32_t>()[b];
    ATTN_CHECK(n >= 1 && n <= S, "TransformerSeq2Seq: src_lengths[", b, "] = ", n, " outside [1, ", S, "]");
  }
  return l;
}

}  // namespace

nlohmann::json TransformerSeq2SeqOptions::to_json() const {
  return {{"model", "transformer"},
          {"src_vocab", src_vocab},
          {"tgt_vocab", tgt_vocab},
          {"d_model", d_model},
          {"nhead", nhead},
          {"num_encoder_layers", num_encoder_layers},
          {"num_decoder_layers", num_decoder_layers},
          {"dim_feedforward", dim_feedforward},
          {"dropout", dropout},
          {"activation", activation_name(activation)},
          {"norm_first", norm_first},
          {"max_len", max_len},
          {"pad_id", pad_id},
          {"num_kv_heads", num_kv_heads}};
}

TransformerSeq2SeqOptions TransformerSeq2SeqOptions::from_json(const nlohmann::json& j) {
  ATTN_CHECK(j.is_object(), "TransformerSeq2SeqOptions: expected a JSON object, got ", j.dump());
  TransformerSeq2SeqOptions c;
  const char* key = "";
  try {
    auto get = [&](const char* k, auto& field) {
      key = k;
      if (j.contains(k)) field = j.at(k).get<std::decay_t<decltype(field)>>();
    };
    std::string model = "transformer", activation = activation_name(c.activation);
    get("model", model);
    ATTN_CHECK(model == "transformer", "TransformerSeq2SeqOptions: model '", model, "' (expected transformer)");
    get("src_vocab", c.src_vocab);
    get("tgt_vocab", c.tgt_vocab);
    get("d_model", c.d_model);
    get("nhead", c.nhead);
    get("num_encoder_layers", c.num_encoder_layers);
    get("num_decoder_layers", c.num_decoder_layers);
    get("dim_feedforward", c.dim_feedforward);
    get("dropout", c.dropout);
    get("activation", activation);
    ATTN_CHECK(activation == "relu" || activation == "gelu", "TransformerSeq2SeqOptions: activation '", activation,
               "' (expected relu or gelu)");
    c.activation = activation == "relu" ? nn::Activation::relu : nn::Activation::gelu;
    get("norm_first", c.norm_first);
    get("max_len", c.max_len);
    get("pad_id", c.pad_id);
    get("num_kv_heads", c.num_kv_heads);
  } catch (const nlohmann::json::exception& e) {
    fail("TransformerSeq2SeqOptions: malformed field '", key, "': ", e.what());
  }
  c.validate();
  return c;
}

void TransformerSeq2SeqOptions::validate() const {
  ATTN_CHECK(src_vocab > 0 && tgt_vocab > 0, "TransformerSeq2SeqOptions: src_vocab ", src_vocab, " and tgt_vocab ",
             tgt_vocab, " must be positive");
  ATTN_CHECK(pad_id >= 0 && pad_id < src_vocab && pad_id < tgt_vocab, "TransformerSeq2SeqOptions: pad_id ", pad_id,
             " outside the vocabularies (", src_vocab, ", ", tgt_vocab, ")");
  ATTN_CHECK(d_model > 0 && nhead > 0 && d_model % nhead == 0, "TransformerSeq2SeqOptions: d_model ", d_model,
             " must be a positive multiple of nhead ", nhead);
  ATTN_CHECK(num_kv_heads >= 0 && (num_kv_heads == 0 || nhead % num_kv_heads == 0),
             "TransformerSeq2SeqOptions: num_kv_heads ", num_kv_heads, " must divide nhead ", nhead);
  ATTN_CHECK(dim_feedforward > 0, "TransformerSeq2SeqOptions: dim_feedforward ", dim_feedforward, " must be positive");
  ATTN_CHECK(max_len > 0, "TransformerSeq2SeqOptions: max_len ", max_len, " must be positive");
  ATTN_CHECK(num_encoder_layers >= 0 && num_decoder_layers >= 0, "TransformerSeq2SeqOptions: num_encoder_layers ",
             num_encoder_layers, " and num_decoder_layers ", num_decoder_layers, " must be >= 0");
  ATTN_CHECK(dropout >= 0 && dropout < 1, "TransformerSeq2SeqOptions: dropout ", dropout, " must be in [0, 1)");
}

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
                                     const nn::AttentionMasks& memory_masks, std::vector<Tensor>* cross_weights) {
  Var h = y;
  if (cross_weights) cross_weights->assign(layers.size(), Tensor());
  for (size_t i = 0; i < layers.size(); ++i)
    h = layers[i]->forward(h, memory, tgt_masks, memory_masks, cross_weights ? &(*cross_weights)[i] : nullptr);
  return norm->forward(h);
}

TransformerCore::TransformerCore(const nn::TransformerLayerOptions& o, int64_t ne, int64_t nd, Rng& rng) {
  encoder = register_module("encoder", std::make_shared<TransformerEncoderStack>(o, ne, rng));
  decoder = register_module("decoder", std::make_shared<TransformerDecoderStack>(o, nd, rng));
}

TransformerSeq2Seq::TransformerSeq2Seq(const TransformerSeq2SeqOptions& o, Rng& rng) : opts(o) {
  o.validate();
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

Var TransformerSeq2Seq::embed(const nn::Embedding& emb, const Tensor& ids, int64_t offset) {
  // x = dropout(emb(ids) * sqrt(E) + pe[offset:])
  Var x = ag::mul(emb.forward(ids), std::sqrt(static_cast<double>(opts.d_model)));
  return drop->forward(pe->forward(x, offset));
}

EncoderState TransformerSeq2Seq::encode(const Tensor& src) {
  check_ids("src", src, opts.src_vocab, opts.max_len);
  EncoderState s;
  s.mask = padding_masks(src);
  s.memory = tf->encoder->forward(embed(*src_emb, src), s.mask);
  return s;
}

EncoderState TransformerSeq2Seq::encode(const Tensor& src, const Tensor& src_lengths) {
  check_ids("src", src, opts.src_vocab, opts.max_len);
  EncoderState s;
  s.mask.key_lengths = checked_lengths(src, src_lengths);
  s.memory = tf->encoder->forward(embed(*src_emb, src), s.mask);
  return s;
}

Var TransformerSeq2Seq::decode(const Tensor& tgt_in, const EncoderState& enc, std::vector<Tensor>* cross_weights,
                               bool hide_target_padding) {
  check_ids("tgt_in", tgt_in, opts.tgt_vocab, opts.max_len);
  ATTN_CHECK(enc.memory.defined() && enc.memory.size(0) == tgt_in.size(0), "TransformerSeq2Seq: tgt_in ",
             shape_str(tgt_in.shape()), " does not match memory ",
             enc.memory.defined() ? shape_str(enc.memory.shape()) : std::string("undefined"));
  nn::AttentionMasks tm = hide_target_padding ? padding_masks(tgt_in) : nn::AttentionMasks{};
  tm.is_causal = true;
  Var h = tf->decoder->forward(embed(*tgt_emb, tgt_in), enc.memory, tm, enc.mask, cross_weights);
  return out->forward(h);
}

Var TransformerSeq2Seq::decode_step(const Tensor& tgt_in, const EncoderState& enc) {
  Var logits = decode(tgt_in, enc);  // [B, T, V]
  const int64_t T = logits.size(1);
  return ag::reshape(ag::slice(logits, 1, T - 1, T), {logits.size(0), logits.size(2)});
}

Var TransformerSeq2Seq::forward(const Tensor& src, const Tensor& tgt_in) { return decode(tgt_in, encode(src)); }

Seq2SeqOutput TransformerSeq2Seq::forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in) {
  Seq2SeqOutput o;
  o.logits = decode(tgt_in, encode(src, src_lengths));
  return o;
}

void TransformerSeq2Seq::begin_step(int64_t step) {
  const uint64_t c = static_cast<uint64_t>(step) << 32;
  drop->stream.counter = c;
  for (auto& l : tf->encoder->layers) {
    for (auto* d : {l->dropout.get(), l->dropout1.get(), l->dropout2.get()}) d->stream.counter = c;
    l->self_attn->dropout_stream().counter = c;
  }
  for (auto& l : tf->decoder->layers) {
    for (auto* d : {l->dropout.get(), l->dropout1.get(), l->dropout2.get(), l->dropout3.get()}) d->stream.counter = c;
    l->self_attn->dropout_stream().counter = c;
    l->multihead_attn->dropout_stream().counter = c;
  }
}

std::vector<Tensor> TransformerSeq2Seq::cross_attention_weights(const Tensor& src, const Tensor& tgt_in) {
  ag::NoGradGuard no_grad;
  const bool was_training = is_training();
  eval();
  std::vector<Tensor> w;
  try {
    decode(tgt_in, encode(src), &w);
  } catch (...) {
    train(was_training);
    throw;
  }
  train(was_training);
  return w;
}

TransformerDecoderCache TransformerSeq2Seq::start_decoding(const EncoderState& enc) {
  ag::NoGradGuard no_grad;
  ATTN_CHECK(enc.memory.defined() && !enc.mask.key_padding_mask.defined() && !enc.mask.attn_mask.defined(),
             "TransformerSeq2Seq.start_decoding: the encoder state must be masked by key lengths only "
             "(encode(src, src_lengths))");
  TransformerDecoderCache c;
  for (auto& l : tf->decoder->layers) c.layers.push_back(l->start_cache(enc.memory, enc.mask.key_lengths));
  return c;
}

Var TransformerSeq2Seq::decode_next(const Tensor& prev_tokens, TransformerDecoderCache& cache,
                                    std::vector<Tensor>* cross_weights) {
  ag::NoGradGuard no_grad;
  ATTN_CHECK(prev_tokens.defined() && prev_tokens.dtype() == DType::i32 && prev_tokens.dim() == 1,
             "TransformerSeq2Seq.decode_next: prev_tokens must be i32 [N], got ",
             prev_tokens.defined() ? shape_str(prev_tokens.shape()) : std::string("undefined"));
  const int64_t N = prev_tokens.size(0);
  ATTN_CHECK(cache.layers.size() == tf->decoder->layers.size() && (cache.layers.empty() || cache.rows() == N),
             "TransformerSeq2Seq.decode_next: prev_tokens ", shape_str(prev_tokens.shape()), " do not fit a cache of ",
             cache.rows(), " rows and ", cache.layers.size(), " layers");
  ATTN_CHECK(cache.length < opts.max_len, "TransformerSeq2Seq.decode_next: position ", cache.length,
             " reaches max_len ", opts.max_len);
  Var x = embed(*tgt_emb, prev_tokens.reshape({N, 1}), cache.length);  // [N, 1, E]
  if (cross_weights) cross_weights->assign(cache.layers.size(), Tensor());
  for (size_t i = 0; i < cache.layers.size(); ++i) {
    Tensor w;
    x = tf->decoder->layers[i]->forward_step(x, cache.layers[i], cross_weights ? &w : nullptr);
    if (cross_weights) (*cross_weights)[i] = w.reshape({N, w.size(1), w.size(3)});  // [N, H, S]
  }
  ++cache.length;
  Var logits = out->forward(tf->decoder->norm->forward(x));  // [N, 1, V]
  return ag::reshape(logits, {N, opts.tgt_vocab});
}

void TransformerDecoderCache::reorder(const Tensor& rows) {
  for (auto& l : layers) l.reorder(rows);
}

}  // namespace attn::models
