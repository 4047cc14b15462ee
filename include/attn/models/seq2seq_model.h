// The interface the training loop (train/) sees of any sequence-to-sequence model: a
// teacher-forced forward pass giving logits, plus a hook that fixes the dropout stream per
// optimizer step so that a resumed run draws the same masks as an uninterrupted one.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "attn/nn/module.h"

namespace attn::models {

using ag::Var;

struct Seq2SeqOutput {
  Var logits;         // [B, T, V]: scores for tgt_out given tgt_in (teacher forcing)
  Tensor attention;   // [B, T, S] attention weights of every decoder step (padded source
                      // positions 0); undefined for models without a single alignment
};

class Seq2SeqModel : public nn::Module {
 public:
  // src: i32 [B, S] (PAD = 0), src_lengths: i32 [B], tgt_in: i32 [B, T] (<bos> t1 .. tn, pad).
  virtual Seq2SeqOutput forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in) = 0;
  // Called before the forward of optimizer step `step`: dropout masks become a function of
  // (seed, step), independent of how many steps ran in this process.
  virtual void begin_step(int64_t step) {}
  // The configuration, enough to rebuild the model (stored in checkpoint metadata).
  virtual nlohmann::json config_json() const = 0;
};

}  // namespace attn::models
