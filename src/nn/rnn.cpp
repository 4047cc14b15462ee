// Multi-layer bidirectional GRU / LSTM over the fused cells.
#include "attn/nn/rnn.h"

#include <cmath>
#include <string>

#include "attn/autograd/ops.h"

namespace attn::nn {

RnnBase::RnnBase(Kind kind, const RnnOptions& o, Rng& rng) : kind_(kind), opts_(o) {
  const char* name = kind == Kind::gru ? "GRU" : "LSTM";
  ATTN_CHECK(o.input_size > 0 && o.hidden_size > 0 && o.num_layers > 0, name,
             ": input_size, hidden_size and num_layers must be positive, got ", o.input_size, ", ",
             o.hidden_size, ", ", o.num_layers);
  ATTN_CHECK(o.dropout >= 0 && o.dropout < 1, name, ": dropout ", o.dropout, " must be in [0, 1)");
  const int64_t G = (kind == Kind::gru ? 3 : 4) * o.hidden_size, H = o.hidden_size;
  const int64_t D = o.bidirectional ? 2 : 1;
  const double bound = 1.0 / std::sqrt(static_cast<double>(H));
  weights_.resize(static_cast<size_t>(o.num_layers * D));
  for (int64_t l = 0; l < o.num_layers; ++l)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t in = l == 0 ? o.input_size : D * H;
      const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      auto& w = weights_[static_cast<size_t>(l * D + d)];
      register_parameter("weight_ih" + sfx, &w[0], uniform_init({G, in}, bound, rng));
      register_parameter("weight_hh" + sfx, &w[1], uniform_init({G, H}, bound, rng));
      if (o.bias) {
        register_parameter("bias_ih" + sfx, &w[2], uniform_init({G}, bound, rng));
        register_parameter("bias_hh" + sfx, &w[3], uniform_init({G}, bound, rng));
      }
    }
  stream_.seed = rng.next_u64();
}

RnnOutput RnnBase::forward(const Var& x, const Var& h0, const Var& c0, const Tensor& lengths) {
  const bool lstm = kind_ == Kind::lstm;
  const char* name = lstm ? "LSTM" : "GRU";
  const int64_t H = opts_.hidden_size, L = opts_.num_layers, D = opts_.bidirectional ? 2 : 1;
  ATTN_CHECK(x.dim() == 3 && x.size(2) == opts_.input_size, name, ": input ", shape_str(x.shape()),
             " expected ", opts_.batch_first ? "[B, T, " : "[T, B, ", opts_.input_size, "]");
  // Time-major inside: a step's slice of [T, B, .] is a contiguous view.
  Var seq = opts_.batch_first ? ag::transpose(x, 0, 1) : x;
  const int64_t T = seq.size(0), B = seq.size(1);
  for (const Var* s : {&h0, &c0})
    if (s->defined())
      ATTN_CHECK(s->dim() == 3 && s->size(0) == L * D && s->size(1) == B && s->size(2) == H, name,
                 ": initial state ", shape_str(s->shape()), " expected [", L * D, ", ", B, ", ", H, "]");
  // Per step: which sequences are still running, and a [T, B, 1] mask zeroing padded outputs.
  std::vector<Tensor> active;
  Var out_mask;
  if (lengths.defined()) {
    ATTN_CHECK(lengths.dtype() == DType::i32 && lengths.dim() == 1 && lengths.size(0) == B, name,
               ": lengths must be i32 [", B, "], got ", shape_str(lengths.shape()));
    Tensor len = lengths.contiguous();
    const int32_t* lp = len.data<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      ATTN_CHECK(lp[b] >= 0 && lp[b] <= T, name, ": length ", lp[b], " of sequence ", b, " not in [0, ", T, "]");
    Tensor m = Tensor::empty({T, B, 1});
    for (int64_t t = 0; t < T; ++t) {
      Tensor a = Tensor::empty({B}, DType::i32);
      for (int64_t b = 0; b < B; ++b) {
        a.data<int32_t>()[b] = t < lp[b] ? 1 : 0;
        m.data<float>()[t * B + b] = t < lp[b] ? 1.f : 0.f;
      }
      active.push_back(a);
    }
    out_mask = Var(m.to(x.dtype()), false);
  }
  auto zeros = [&] { return Var(Tensor::zeros({B, H}, x.dtype()), false); };
  std::vector<Var> h_n, c_n;
  for (int64_t l = 0; l < L; ++l) {
    std::vector<Var> dir_out;
    for (int64_t d = 0; d < D; ++d) {
      const auto& w = weights_[static_cast<size_t>(l * D + d)];
      const int64_t idx = l * D + d;
      // One GEMM for the input projection of every step: [T, B, G].
      Var gi = ag::linear(seq, w[0], w[2]);
      const int64_t G = gi.size(2);
      Var h = h0.defined() ? ag::reshape(ag::slice(h0, 0, idx, idx + 1), {B, H}) : zeros();
      Var c = lstm ? (c0.defined() ? ag::reshape(ag::slice(c0, 0, idx, idx + 1), {B, H}) : zeros()) : Var();
      std::vector<Var> outs(static_cast<size_t>(T));
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = d == 0 ? s : T - 1 - s;
        Var git = ag::reshape(ag::slice(gi, 0, t, t + 1), {B, G});
        Tensor act = active.empty() ? Tensor() : active[static_cast<size_t>(t)];
        if (lstm) {
          auto hc = ag::lstm_cell(git, h, c, w[1], w[3], act);
          h = hc.first;
          c = hc.second;
        } else {
          h = ag::gru_cell(git, h, w[1], w[3], act);
        }
        outs[static_cast<size_t>(t)] = h;
      }
      h_n.push_back(h);
      if (lstm) c_n.push_back(c);
      dir_out.push_back(ag::stack(outs, 0));  // [T, B, H]
    }
    seq = D == 1 ? dir_out[0] : ag::concat(dir_out, 2);
    if (out_mask.defined()) seq = ag::mul(seq, out_mask);
    if (l + 1 < L && opts_.dropout > 0 && is_training())
      seq = ag::dropout(seq, opts_.dropout, stream_.seed, stream_.take(seq.numel()));
  }
  RnnOutput r;
  r.output = opts_.batch_first ? ag::transpose(seq, 0, 1) : seq;
  r.h_n = ag::stack(h_n, 0);
  if (lstm) r.c_n = ag::stack(c_n, 0);
  return r;
}

}  // namespace attn::nn
