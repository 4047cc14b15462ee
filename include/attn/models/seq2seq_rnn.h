// RNN encoder–decoder with attention (Bahdanau, Cho & Bengio 2015; Luong, Pham & Manning 2015).
//
// Encoder (config.encoder):
//  * rnn (default) — embedding -> bidirectional GRU or LSTM over the true source lengths ->
//    h_j [B, S, 2H]. The decoder's first state is s_0 = tanh(W_b [→h_last; ←h_first])
//    (Bahdanau A.2.2).
//  * cnn — embedding -> ConvEncoder (conv_encoder.h: sinusoidal positions, conv_layers
//    residual GLU convolutions of width conv_kernel over 2H channels, Gehring et al. 2017)
//    -> h_j [B, S, 2H], so the decoder and attention are the same as with the RNN. A
//    convolutional encoder has no final state; s_0 = tanh(W_b mean_j h_j), the mean over the
//    real positions. encoder_layers is unused; cell picks the decoder's cell only.
// An LSTM decoder starts with c_0 = 0.
//
// Decoder, per step i with previous token y_{i-1} (teacher forcing in training):
//  * bahdanau, location — the standard Bahdanau formulation: attention reads the previous
//    state, α_i = attend(s_{i-1}, h, α_{i-1}); c_i = Σ α_ij h_j;
//    s_i = cell([E y_{i-1}; c_i], s_{i-1}); o_i = tanh(W_o [s_i; c_i; E y_{i-1}]) (a tanh deep
//    output in place of the paper's maxout); logits = W_y o_i.
//  * luong-dot | luong-general | luong-concat — Luong's formulation with input feeding
//    (§3.3; off with input_feeding = false): s_t = cell([E y_{t-1}; h̃_{t-1}], s_{t-1});
//    α_t = attend(s_t, h); c_t = Σ α_tj h_j; h̃_t = tanh(W_c [c_t; s_t]); logits = W_y h̃_t.
// Padded source positions get attention weight exactly 0.
//
// Parameter names: src_embed.weight, encoder.* (torch.nn.GRU/LSTM names; for cnn
// encoder.in_proj.{weight,bias} and encoder.convs.<l>.{weight,bias}), bridge.*,
// tgt_embed.weight, decoder_cell.{weight_ih,weight_hh,bias_ih,bias_hh} (torch GRUCell /
// LSTMCell), attention.* (rnn_attention.h), output_hidden.* (W_o / W_c), output.* (W_y).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "attn/models/conv_encoder.h"
#include "attn/models/rnn_attention.h"
#include "attn/models/seq2seq_model.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/rnn.h"

namespace attn::models {

enum class CellKind { gru, lstm };
enum class EncoderKind { rnn, cnn };

struct Seq2SeqRNNConfig {
  int64_t src_vocab = 0;
  int64_t tgt_vocab = 0;
  int64_t embed_dim = 32;
  int64_t hidden_dim = 64;   // encoder, per direction (encoder output 2 * hidden_dim)
  int64_t encoder_layers = 1;
  int64_t decoder_dim = 64;  // decoder state (luong-dot needs 2 * hidden_dim)
  int64_t attn_dim = 64;     // additive scores
  CellKind cell = CellKind::gru;
  AttentionKind attention = AttentionKind::bahdanau;
  bool input_feeding = true;  // Luong variants only
  int64_t location_filters = 8;
  int64_t location_kernel = 7;
  double dropout = 0.0;  // on embeddings, between encoder layers (rnn), the output hidden layer and (cnn) every conv input, in training
  EncoderKind encoder = EncoderKind::rnn;  // JSON "encoder": "rnn" | "cnn"
  int64_t conv_layers = 4;  // cnn: residual convolution blocks
  int64_t conv_kernel = 5;  // cnn: kernel width, odd (each layer widens the receptive field by conv_kernel - 1)

  // {"src_vocab":.., "cell":"gru", "attention":"bahdanau", ...}
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; throws attn::Error for unknown names or bad sizes.
  static Seq2SeqRNNConfig from_json(const nlohmann::json& j);
  // Throws attn::Error naming the field.
  void validate() const;
};

// The encoder's output for one source batch.
struct RnnEncoding {
  AttentionMemory memory;  // encoder states h_j, projected keys, padding mask
  Var summary;             // [B, 2H]: rnn: [→h at each sequence's last real step; ←h at step 0];
                           // cnn: mean of h_j over the real positions
};

// Decoder state between steps (rows = batch, or batch × beam in beam search).
struct RnnDecoderState {
  Var h;             // [B, Dd]
  Var c;             // [B, Dd] (LSTM) or undefined
  Var feed;          // [B, Dd]: h̃_{t-1} (Luong with input feeding) or undefined
  Var prev_weights;  // [B, S]: α_{i-1} (location) or undefined
};

// The decoder's GRU / LSTM cell parameters, torch.nn.GRUCell / LSTMCell names and init.
class DecoderCell : public nn::Module {
 public:
  DecoderCell(CellKind kind, int64_t input_size, int64_t hidden_size, Rng& rng);
  CellKind kind;
  Var weight_ih, weight_hh, bias_ih, bias_hh;  // [G*H, in], [G*H, H], [G*H], [G*H]
};

struct RnnStepOutput {
  Var logits;   // [B, V]
  Var weights;  // [B, S]
};

class Seq2SeqRNN : public Seq2SeqModel {
 public:
  Seq2SeqRNN(const Seq2SeqRNNConfig& config, Rng& rng);

  Seq2SeqOutput forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in) override;
  void begin_step(int64_t step) override;
  nlohmann::json config_json() const override { return config_.to_json(); }
  const Seq2SeqRNNConfig& config() const { return config_; }

  // The pieces forward() is made of, for decoders:
  // src: i32 [B, S], src_lengths: i32 [B] (each in [1, S]).
  RnnEncoding encode(const Tensor& src, const Tensor& src_lengths);
  RnnDecoderState initial_state(const RnnEncoding& encoding) const;
  // prev_tokens: i32 [B]. Advances `state` by one step.
  RnnStepOutput step(const AttentionMemory& memory, RnnDecoderState& state, const Tensor& prev_tokens);
  // Rows `rows` (i32 [N]) of a state (beam search).
  static RnnDecoderState select(const RnnDecoderState& state, const Tensor& rows);

  std::shared_ptr<nn::Embedding> src_embed, tgt_embed;
  std::shared_ptr<nn::RnnBase> encoder;         // encoder = rnn (else null)
  std::shared_ptr<ConvEncoder> conv_encoder;    // encoder = cnn (else null); registered as "encoder"
  std::shared_ptr<nn::Linear> bridge, output_hidden, output;
  std::shared_ptr<RnnAttention> attention;
  std::shared_ptr<DecoderCell> decoder_cell;

 private:
  Var maybe_dropout(const Var& x);
  Seq2SeqRNNConfig config_;
  bool bahdanau_style_;
  nn::DropoutStream dropout_;
};

}  // namespace attn::models
