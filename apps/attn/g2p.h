// Glue shared by `attn train g2p`, `attn eval g2p` and `attn predict`: the CMUdict split as
// the PyTorch peer makes it, the G2P model of a checkpoint (RNN, CNN-encoder RNN or
// Transformer) rebuilt from the checkpoint's metadata alone, and batched decoding.
//
// A G2P checkpoint's metadata (TrainOptions::meta) holds under "g2p":
//   kind            "rnn" | "cnn" | "transformer"
//   model           the model's config JSON (Seq2SeqRNNConfig / TransformerSeq2SeqOptions)
//   chars, phonemes the vocabularies (Vocabulary::to_json, parsed)
//   data            {"path": absolute path of the CMUdict file, "test_words", "dev_words",
//                    "keep_stress"}: enough to rebuild the same split
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/data/cmudict.h"
#include "attn/data/vocabulary.h"
#include "attn/decode/search.h"
#include "attn/decode/step_decoder.h"
#include "attn/models/seq2seq_model.h"
#include "attn/train/trainer.h"

namespace attn::cli::g2p {

struct DataSpec {
  std::string path;
  int64_t test_words = 12000;
  int64_t dev_words = 3000;
  bool keep_stress = false;
  nlohmann::json to_json() const;
  static DataSpec from_json(const nlohmann::json& j);
};

// The dictionary and its split (split_words on the SHA-1 order, as the peer).
struct G2PData {
  data::Cmudict dict;
  data::CmudictSplit split;
};
G2PData load_data(const DataSpec& spec);

// Held-out words as an EvalSet: sources = characters, references = every pronunciation.
// Unknown characters or phonemes throw, naming the word.
train::EvalSet make_eval_set(const data::Cmudict& dict, const std::vector<std::string>& words,
                             const data::Vocabulary& chars, const data::Vocabulary& phonemes);

struct DecodeSettings {
  int64_t beam = 1;         // 1 = greedy
  double alpha = 0;         // GNMT length normalisation (beam only)
  int64_t max_extra = 8;    // output steps allowed: longest source of the batch + max_extra (peer)
};

// The model of a G2P run with its vocabularies.
class G2PModel {
 public:
  // kind: rnn | cnn | transformer; config: the model's JSON config (vocabulary sizes set).
  G2PModel(const std::string& kind, const nlohmann::json& config, const data::Vocabulary& chars,
           const data::Vocabulary& phonemes, uint64_t seed);
  ~G2PModel();

  // Rebuilds the model from a checkpoint (a file, or a directory: its best.safetensors, else
  // its last.safetensors) and loads its parameters. `resolved_path` receives the file read.
  static std::unique_ptr<G2PModel> load(const std::string& checkpoint, std::string* resolved_path = nullptr,
                                        nlohmann::json* meta = nullptr);

  models::Seq2SeqModel& model() { return *model_; }
  const std::string& kind() const { return kind_; }
  const data::Vocabulary& chars() const { return chars_; }
  const data::Vocabulary& phonemes() const { return phonemes_; }
  nlohmann::json config_json() const { return model_->config_json(); }
  // One line: "rnn (gru, bahdanau attention, embed 64, ...)".
  std::string describe() const;
  // The "g2p" metadata object (see the top of this file).
  nlohmann::json metadata(const DataSpec& data) const;

  // sources: character ids (no specials), each non-empty. One hypothesis per source, with
  // its alignment when the model has one (RNN models).
  std::vector<decode::Hypothesis> decode(const std::vector<std::vector<int32_t>>& sources,
                                         const DecodeSettings& settings);

  // Characters of `word` as ids; attn::Error naming the word and the character when the
  // model has not seen it, or when the word is empty.
  std::vector<int32_t> encode_word(const std::string& word) const;

  // Per-head cross-attention weights [H, rows, S] of decoder layer `layer` (negative: from
  // the last) for one source and its output tokens (no specials): row i is the step that
  // predicts tokens[i] (row tokens.size(): <eos>); rows <= tokens.size() + 1.
  // Transformer only; attn::Error for other kinds or a layer out of range.
  Tensor cross_attention(const std::vector<int32_t>& source, const std::vector<int32_t>& tokens, int64_t rows,
                         int64_t layer);
  int64_t decoder_layers() const;

 private:
  std::unique_ptr<decode::StepDecoder> make_step_decoder();
  std::string kind_;
  data::Vocabulary chars_, phonemes_;
  std::shared_ptr<models::Seq2SeqModel> model_;
};

// The checkpoint file a --checkpoint argument names (directory -> best, else last).
// Throws attn::Error naming the path when there is none.
std::string resolve_checkpoint(const std::string& path);

}  // namespace attn::cli::g2p
