// RNN encoder–decoder with attention (see the header for the equations).
#include "attn/models/seq2seq_rnn.h"

#include <cmath>

#include "attn/autograd/ops.h"

namespace attn::models {

namespace {
const char* cell_name(CellKind k) { return k == CellKind::gru ? "gru" : "lstm"; }
const char* encoder_name(EncoderKind k) { return k == EncoderKind::rnn ? "rnn" : "cnn"; }
}  // namespace

nlohmann::json Seq2SeqRNNConfig::to_json() const {
  return {{"model", "seq2seq_rnn"},
          {"src_vocab", src_vocab},
          {"tgt_vocab", tgt_vocab},
          {"embed_dim", embed_dim},
          {"hidden_dim", hidden_dim},
          {"encoder_layers", encoder_layers},
          {"decoder_dim", decoder_dim},
          {"attn_dim", attn_dim},
          {"cell", cell_name(cell)},
          {"attention", attention_name(attention)},
          {"input_feeding", input_feeding},
          {"location_filters", location_filters},
          {"location_kernel", location_kernel},
          {"dropout", dropout},
          {"encoder", encoder_name(encoder)},
          {"conv_layers", conv_layers},
          {"conv_kernel", conv_kernel}};
}

Seq2SeqRNNConfig Seq2SeqRNNConfig::from_json(const nlohmann::json& j) {
  ATTN_CHECK(j.is_object(), "Seq2SeqRNNConfig: expected a JSON object, got ", j.dump());
  Seq2SeqRNNConfig c;
  try {
    auto get = [&](const char* key, auto& field) {
      if (j.contains(key)) field = j.at(key).get<std::decay_t<decltype(field)>>();
    };
    get("src_vocab", c.src_vocab);
    get("tgt_vocab", c.tgt_vocab);
    get("embed_dim", c.embed_dim);
    get("hidden_dim", c.hidden_dim);
    get("encoder_layers", c.encoder_layers);
    get("decoder_dim", c.decoder_dim);
    get("attn_dim", c.attn_dim);
    get("input_feeding", c.input_feeding);
    get("location_filters", c.location_filters);
    get("location_kernel", c.location_kernel);
    get("dropout", c.dropout);
    get("conv_layers", c.conv_layers);
    get("conv_kernel", c.conv_kernel);
    if (j.contains("cell")) {
      const std::string s = j.at("cell").get<std::string>();
      ATTN_CHECK(s == "gru" || s == "lstm", "Seq2SeqRNNConfig: cell '", s, "' (expected gru or lstm)");
      c.cell = s == "gru" ? CellKind::gru : CellKind::lstm;
    }
    if (j.contains("encoder")) {
      const std::string s = j.at("encoder").get<std::string>();
      ATTN_CHECK(s == "rnn" || s == "cnn", "Seq2SeqRNNConfig: encoder '", s, "' (expected rnn or cnn)");
      c.encoder = s == "rnn" ? EncoderKind::rnn : EncoderKind::cnn;
    }
    if (j.contains("attention")) c.attention = parse_attention(j.at("attention").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    fail("Seq2SeqRNNConfig: malformed field: ", e.what());
  }
  c.validate();
  return c;
}

void Seq2SeqRNNConfig::validate() const {
  ATTN_CHECK(src_vocab > 3 && tgt_vocab > 3, "Seq2SeqRNNConfig: src_vocab ", src_vocab, " and tgt_vocab ", tgt_vocab,
             " must exceed the 3 special symbols");
  ATTN_CHECK(embed_dim > 0 && hidden_dim > 0 && decoder_dim > 0 && encoder_layers > 0,
             "Seq2SeqRNNConfig: embed_dim, hidden_dim, decoder_dim, encoder_layers must be positive, got ", embed_dim,
             ", ", hidden_dim, ", ", decoder_dim, ", ", encoder_layers);
  ATTN_CHECK(dropout >= 0 && dropout < 1, "Seq2SeqRNNConfig: dropout ", dropout, " must be in [0, 1)");
  ATTN_CHECK(conv_layers >= 1, "Seq2SeqRNNConfig: conv_layers ", conv_layers, " must be at least 1");
  ATTN_CHECK(conv_kernel >= 1 && conv_kernel % 2 == 1, "Seq2SeqRNNConfig: conv_kernel ", conv_kernel,
             " must be odd and positive (same-length convolution)");
  if (attention == AttentionKind::luong_dot)
    ATTN_CHECK(decoder_dim == 2 * hidden_dim, "Seq2SeqRNNConfig: luong-dot needs decoder_dim == 2 * hidden_dim, got ",
               decoder_dim, " and 2 * ", hidden_dim);
}

DecoderCell::DecoderCell(CellKind k, int64_t in, int64_t H, Rng& rng) : kind(k) {
  const int64_t G = (k == CellKind::gru ? 3 : 4) * H;
  const double bound = 1.0 / std::sqrt(static_cast<double>(H));
  register_parameter("weight_ih", &weight_ih, nn::uniform_init({G, in}, bound, rng));
  register_parameter("weight_hh", &weight_hh, nn::uniform_init({G, H}, bound, rng));
  register_parameter("bias_ih", &bias_ih, nn::uniform_init({G}, bound, rng));
  register_parameter("bias_hh", &bias_hh, nn::uniform_init({G}, bound, rng));
}

Seq2SeqRNN::Seq2SeqRNN(const Seq2SeqRNNConfig& c, Rng& rng)
    : config_(c), bahdanau_style_(c.attention == AttentionKind::bahdanau || c.attention == AttentionKind::location) {
  c.validate();
  const int64_t E = c.embed_dim, H = c.hidden_dim, Dd = c.decoder_dim, Dk = 2 * H;
  src_embed = register_module("src_embed", std::make_shared<nn::Embedding>(c.src_vocab, E, rng, 0));
  if (c.encoder == EncoderKind::cnn) {
    conv_encoder = register_module("encoder", std::make_shared<ConvEncoder>(E, Dk, c.conv_layers, c.conv_kernel, rng));
  } else {
    nn::RnnOptions ro;
    ro.input_size = E;
    ro.hidden_size = H;
    ro.num_layers = c.encoder_layers;
    ro.bidirectional = true;
    ro.batch_first = true;
    ro.dropout = c.dropout;  // between encoder layers (a no-op with one layer)
    if (c.cell == CellKind::gru)
      encoder = register_module("encoder", std::make_shared<nn::GRU>(ro, rng));
    else
      encoder = register_module("encoder", std::make_shared<nn::LSTM>(ro, rng));
  }
  bridge = register_module("bridge", std::make_shared<nn::Linear>(Dk, Dd, rng));
  tgt_embed = register_module("tgt_embed", std::make_shared<nn::Embedding>(c.tgt_vocab, E, rng, 0));
  const int64_t cell_in = bahdanau_style_ ? E + Dk : E + (c.input_feeding ? Dd : 0);
  decoder_cell = register_module("decoder_cell", std::make_shared<DecoderCell>(c.cell, cell_in, Dd, rng));
  attention = register_module("attention", std::make_shared<RnnAttention>(c.attention, Dd, Dk, c.attn_dim, rng,
                                                                          c.location_filters, c.location_kernel));
  const int64_t out_in = bahdanau_style_ ? Dd + Dk + E : Dk + Dd;
  output_hidden = register_module("output_hidden", std::make_shared<nn::Linear>(out_in, Dd, rng));
  output = register_module("output", std::make_shared<nn::Linear>(Dd, c.tgt_vocab, rng));
  dropout_.seed = rng.next_u64();
}

void Seq2SeqRNN::begin_step(int64_t step) {
  dropout_.counter = static_cast<uint64_t>(step) << 32;
  if (encoder) encoder->begin_step(step);  // the cnn encoder draws from dropout_
}

Var Seq2SeqRNN::maybe_dropout(const Var& x) {
  if (!is_training() || config_.dropout == 0) return x;
  return ag::dropout(x, config_.dropout, dropout_.seed, dropout_.take(x.numel()));
}

RnnEncoding Seq2SeqRNN::encode(const Tensor& src, const Tensor& src_lengths) {
  ATTN_CHECK(src.defined() && src.dtype() == DType::i32 && src.dim() == 2, "Seq2SeqRNN.encode: src must be i32 [B, S], got ",
             src.defined() ? shape_str(src.shape()) : std::string("undefined"));
  const int64_t B = src.size(0), H = config_.hidden_dim, L = config_.encoder_layers;
  ATTN_CHECK(src_lengths.defined() && src_lengths.dtype() == DType::i32 && src_lengths.dim() == 1 &&
                 src_lengths.size(0) == B,
             "Seq2SeqRNN.encode: src_lengths must be i32 [", B, "], got ",
             src_lengths.defined() ? shape_str(src_lengths.shape()) : std::string("undefined"));
  Var emb = maybe_dropout(src_embed->forward(src));  // [B, S, E]
  if (conv_encoder) {
    ConvEncoding ce = conv_encoder->forward(emb, src_lengths, [this](const Var& v) { return maybe_dropout(v); });
    RnnEncoding enc;
    enc.memory = attention->prepare(ce.output, src_lengths);
    enc.summary = ce.summary;  // mean over real positions: a convolution has no final state
    return enc;
  }
  nn::RnnOutput out = encoder->forward(emb, Var(), Var(), src_lengths);
  RnnEncoding enc;
  enc.memory = attention->prepare(out.output, src_lengths);
  // Top layer's final states, forward (index 2(L-1)) and backward (2(L-1) + 1): [B, 2H].
  Var top = ag::slice(out.h_n, 0, 2 * (L - 1), 2 * L);            // [2, B, H]
  enc.summary = ag::reshape(ag::transpose(top, 0, 1), {B, 2 * H});  // [B, 2H]
  return enc;
}

RnnDecoderState Seq2SeqRNN::initial_state(const RnnEncoding& enc) const {
  const int64_t B = enc.summary.size(0), S = enc.memory.values.size(1), Dd = config_.decoder_dim;
  const DType dt = enc.summary.dtype();
  RnnDecoderState st;
  st.h = ag::tanh(bridge->forward(enc.summary));  // s_0 = tanh(W_b [→h; ←h]) (cnn: tanh(W_b mean_j h_j))
  if (config_.cell == CellKind::lstm) st.c = Var(Tensor::zeros({B, Dd}, dt), false);
  if (!bahdanau_style_ && config_.input_feeding) st.feed = Var(Tensor::zeros({B, Dd}, dt), false);
  if (config_.attention == AttentionKind::location) st.prev_weights = Var(Tensor::zeros({B, S}, dt), false);
  return st;
}

RnnStepOutput Seq2SeqRNN::step(const AttentionMemory& m, RnnDecoderState& st, const Tensor& prev_tokens) {
  const int64_t B = m.values.size(0);
  ATTN_CHECK(prev_tokens.defined() && prev_tokens.dtype() == DType::i32 && prev_tokens.dim() == 1 &&
                 prev_tokens.size(0) == B,
             "Seq2SeqRNN.step: prev_tokens must be i32 [", B, "], got ",
             prev_tokens.defined() ? shape_str(prev_tokens.shape()) : std::string("undefined"));
  const DecoderCell& cell = *decoder_cell;
  auto run_cell = [&](const Var& x) {
    Var gi = ag::linear(x, cell.weight_ih, cell.bias_ih);
    if (config_.cell == CellKind::gru) {
      st.h = ag::gru_cell(gi, st.h, cell.weight_hh, cell.bias_hh);
    } else {
      auto hc = ag::lstm_cell(gi, st.h, st.c, cell.weight_hh, cell.bias_hh);
      st.h = hc.first;
      st.c = hc.second;
    }
  };
  Var e = maybe_dropout(tgt_embed->forward(prev_tokens));  // [B, E]
  RnnStepOutput r;
  Var hidden;
  if (bahdanau_style_) {
    // α_i from s_{i-1} (and α_{i-1}); s_i = cell([E y; c_i], s_{i-1}); o_i = tanh(W_o [s_i; c_i; E y]).
    auto [w, ctx] = attention->forward(m, st.h, st.prev_weights);
    run_cell(ag::concat({e, ctx}, 1));
    hidden = ag::tanh(output_hidden->forward(ag::concat({st.h, ctx, e}, 1)));
    if (st.prev_weights.defined()) st.prev_weights = w;
    r.weights = w;
  } else {
    // s_t = cell([E y; h̃_{t-1}], s_{t-1}); α_t from s_t; h̃_t = tanh(W_c [c_t; s_t]).
    run_cell(st.feed.defined() ? ag::concat({e, st.feed}, 1) : e);
    auto [w, ctx] = attention->forward(m, st.h);
    hidden = ag::tanh(output_hidden->forward(ag::concat({ctx, st.h}, 1)));
    if (st.feed.defined()) st.feed = hidden;
    r.weights = w;
  }
  r.logits = output->forward(maybe_dropout(hidden));  // [B, V]
  return r;
}

RnnDecoderState Seq2SeqRNN::select(const RnnDecoderState& st, const Tensor& rows) {
  RnnDecoderState r;
  for (auto [from, to] : {std::pair{&st.h, &r.h}, {&st.c, &r.c}, {&st.feed, &r.feed}, {&st.prev_weights, &r.prev_weights}})
    if (from->defined()) *to = ag::index_select(*from, rows);
  return r;
}

Seq2SeqOutput Seq2SeqRNN::forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in) {
  ATTN_CHECK(tgt_in.defined() && tgt_in.dtype() == DType::i32 && tgt_in.dim() == 2 && tgt_in.size(0) == src.size(0),
             "Seq2SeqRNN.forward: tgt_in must be i32 [", src.size(0), ", T], got ",
             tgt_in.defined() ? shape_str(tgt_in.shape()) : std::string("undefined"));
  RnnEncoding enc = encode(src, src_lengths);
  RnnDecoderState st = initial_state(enc);
  const int64_t B = tgt_in.size(0), T = tgt_in.size(1), S = src.size(1);
  std::vector<Var> logits;
  Seq2SeqOutput out;
  out.attention = Tensor::empty({B, T, S});
  for (int64_t t = 0; t < T; ++t) {
    RnnStepOutput r = step(enc.memory, st, tgt_in.select(1, t).contiguous());  // teacher forcing
    logits.push_back(r.logits);
    out.attention.select(1, t).copy_from(r.weights.value());
  }
  out.logits = ag::stack(logits, 1);  // [B, T, V]
  return out;
}

}  // namespace attn::models
