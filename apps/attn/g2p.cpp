// G2P glue for the CLI (see g2p.h).
#include "g2p.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "attn/core/error.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/transformer_step_decoder.h"
#include "attn/io/checkpoint.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/models/transformer_seq2seq.h"

namespace attn::cli::g2p {

namespace fs = std::filesystem;

nlohmann::json DataSpec::to_json() const {
  return {{"path", path}, {"test_words", test_words}, {"dev_words", dev_words}, {"keep_stress", keep_stress}};
}

DataSpec DataSpec::from_json(const nlohmann::json& j) {
  DataSpec d;
  try {
    d.path = j.at("path").get<std::string>();
    d.test_words = j.at("test_words").get<int64_t>();
    d.dev_words = j.at("dev_words").get<int64_t>();
    d.keep_stress = j.at("keep_stress").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail("g2p: checkpoint metadata 'g2p.data' is malformed: ", e.what());
  }
  return d;
}

G2PData load_data(const DataSpec& spec) {
  ATTN_CHECK(fs::exists(spec.path), "g2p: data file '", spec.path,
             "' not found (scripts/fetch-data writes data/cmudict/cmudict.tsv)");
  data::CmudictOptions o;
  o.keep_stress = spec.keep_stress;
  G2PData d{data::Cmudict::read(spec.path, o), {}};
  ATTN_CHECK(d.dict.num_words() > spec.test_words + spec.dev_words, "g2p: '", spec.path, "' has ",
             d.dict.num_words(), " words, not more than the ", spec.test_words, " test + ", spec.dev_words,
             " dev words of the split (set --test-words / --dev-words for small files)");
  d.split = data::split_words(d.dict, spec.test_words, spec.dev_words);
  return d;
}

train::EvalSet make_eval_set(const data::Cmudict& dict, const std::vector<std::string>& words,
                             const data::Vocabulary& chars, const data::Vocabulary& phonemes) {
  train::EvalSet s;
  for (const auto& w : words) {
    std::vector<int32_t> src;
    for (char c : w) src.push_back(chars.id(std::string(1, c), w));
    s.sources.push_back(std::move(src));
    std::vector<std::vector<int32_t>> refs;
    for (const auto& p : dict.entry(w).pronunciations) refs.push_back(phonemes.encode(p, w));
    s.references.push_back(std::move(refs));
  }
  return s;
}

std::string resolve_checkpoint(const std::string& path) {
  ATTN_CHECK(!path.empty(), "g2p: --checkpoint is empty");
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"best.safetensors", "last.safetensors"}) {
      const std::string p = (fs::path(path) / name).string();
      if (fs::exists(p, ec)) return p;
    }
    fail("g2p: no checkpoint in '", path, "' (neither best.safetensors nor last.safetensors; train with attn train g2p --out ",
         path, ")");
  }
  ATTN_CHECK(fs::exists(path, ec), "g2p: checkpoint '", path, "' not found");
  return path;
}

G2PModel::G2PModel(const std::string& kind, const nlohmann::json& config, const data::Vocabulary& chars,
                   const data::Vocabulary& phonemes, uint64_t seed)
    : kind_(kind), chars_(chars), phonemes_(phonemes) {
  Rng init_rng(seed, 1000000);
  if (kind == "rnn" || kind == "cnn") {
    models::Seq2SeqRNNConfig cfg = models::Seq2SeqRNNConfig::from_json(config);
    const nlohmann::json back = cfg.to_json();
    const std::string encoder = back.value("encoder", std::string("rnn"));
    // from_json ignores keys it does not know: a build without the convolutional encoder
    // would silently train an RNN encoder.
    ATTN_CHECK(encoder == kind, "g2p: model '", kind, "' needs Seq2SeqRNNConfig encoder '", kind,
               "', but this build's config has encoder '", encoder,
               "' (the convolutional encoder is not in this build)");
    ATTN_CHECK(cfg.src_vocab == chars.size() && cfg.tgt_vocab == phonemes.size(), "g2p: model vocabulary sizes ",
               cfg.src_vocab, ", ", cfg.tgt_vocab, " differ from the vocabularies' ", chars.size(), ", ",
               phonemes.size());
    model_ = std::make_shared<models::Seq2SeqRNN>(cfg, init_rng);
  } else if (kind == "transformer") {
    const models::TransformerSeq2SeqOptions opts = models::TransformerSeq2SeqOptions::from_json(config);
    ATTN_CHECK(opts.src_vocab == chars.size() && opts.tgt_vocab == phonemes.size(), "g2p: model vocabulary sizes ",
               opts.src_vocab, ", ", opts.tgt_vocab, " differ from the vocabularies' ", chars.size(), ", ",
               phonemes.size());
    model_ = std::make_shared<models::TransformerSeq2Seq>(opts, init_rng);
  } else {
    fail("g2p: unknown model kind '", kind, "' (rnn, cnn, transformer)");
  }
}

G2PModel::~G2PModel() = default;

std::string G2PModel::describe() const {
  const nlohmann::json c = model_->config_json();
  std::ostringstream s;
  s << kind_ << " (";
  if (kind_ == "rnn" || kind_ == "cnn") {
    s << c.value("cell", "?") << ", " << c.value("attention", "?") << " attention, embed " << c.value("embed_dim", 0);
    if (kind_ == "cnn")
      s << ", " << c.value("conv_layers", 0) << " conv layers of width " << c.value("conv_kernel", 0) << " over "
        << 2 * c.value("hidden_dim", 0) << " channels";
    else
      s << ", hidden " << c.value("hidden_dim", 0) << "x2, layers " << c.value("encoder_layers", 0);
    s << ", decoder " << c.value("decoder_dim", 0) << ", attn " << c.value("attn_dim", 0) << ", dropout "
      << c.value("dropout", 0.0);
  } else {
    s << (c.value("norm_first", true) ? "pre-norm" : "post-norm") << ", d_model " << c.value("d_model", 0) << ", "
      << c.value("num_encoder_layers", 0) << "+" << c.value("num_decoder_layers", 0) << " layers, "
      << c.value("nhead", 0) << " heads, FFN " << c.value("dim_feedforward", 0) << ", dropout "
      << c.value("dropout", 0.0);
  }
  s << ")";
  return s.str();
}

nlohmann::json G2PModel::metadata(const DataSpec& data) const {
  return {{"kind", kind_},
          {"model", model_->config_json()},
          {"chars", nlohmann::json::parse(chars_.to_json())},
          {"phonemes", nlohmann::json::parse(phonemes_.to_json())},
          {"data", data.to_json()}};
}

std::unique_ptr<G2PModel> G2PModel::load(const std::string& checkpoint, std::string* resolved_path,
                                         nlohmann::json* meta_out) {
  const std::string path = resolve_checkpoint(checkpoint);
  const nlohmann::json meta = io::read_checkpoint_metadata(path);
  ATTN_CHECK(meta.is_object() && meta.contains("g2p") && meta["g2p"].is_object(), "g2p: checkpoint '", path,
             "' is not a G2P checkpoint (no 'g2p' metadata)");
  const nlohmann::json& g = meta["g2p"];
  std::unique_ptr<G2PModel> m;
  try {
    const data::Vocabulary chars = data::Vocabulary::from_json(g.at("chars").dump(), path);
    const data::Vocabulary phonemes = data::Vocabulary::from_json(g.at("phonemes").dump(), path);
    m = std::make_unique<G2PModel>(g.at("kind").get<std::string>(), g.at("model"), chars, phonemes, 0);
  } catch (const nlohmann::json::exception& e) {
    fail("g2p: checkpoint '", path, "' has malformed 'g2p' metadata: ", e.what());
  }
  NamedParams params = m->model_->named_parameters();
  io::load_checkpoint(path, params, nullptr, nullptr, nullptr);
  m->model_->eval();
  if (resolved_path) *resolved_path = path;
  if (meta_out) *meta_out = meta;
  return m;
}

std::unique_ptr<decode::StepDecoder> G2PModel::make_step_decoder() {
  if (kind_ == "rnn" || kind_ == "cnn")
    return std::make_unique<decode::RnnStepDecoder>(static_cast<models::Seq2SeqRNN&>(*model_));
  if (kind_ == "transformer")
    return std::make_unique<decode::TransformerStepDecoder>(static_cast<models::TransformerSeq2Seq&>(*model_));
  fail("g2p: no step decoder for model kind '", kind_, "'");
}

std::vector<decode::Hypothesis> G2PModel::decode(const std::vector<std::vector<int32_t>>& sources,
                                                 const DecodeSettings& settings) {
  ATTN_CHECK(settings.beam >= 1, "g2p: beam width must be >= 1, got ", settings.beam);
  data::Batch b = data::collate_sources(sources);
  std::unique_ptr<decode::StepDecoder> dec = make_step_decoder();
  int64_t longest = 0;
  for (const auto& s : sources) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.size()));
  if (settings.beam == 1) {
    decode::SearchOptions so;
    so.max_length = longest + settings.max_extra;
    return decode::greedy_search(*dec, b.src, b.src_lengths, so);
  }
  decode::BeamOptions bo;
  bo.max_length = longest + settings.max_extra;
  bo.beam_width = settings.beam;
  bo.alpha = settings.alpha;
  bo.n_best = 1;
  std::vector<std::vector<decode::Hypothesis>> all = decode::beam_search(*dec, b.src, b.src_lengths, bo);
  std::vector<decode::Hypothesis> out;
  out.reserve(all.size());
  for (auto& h : all) out.push_back(std::move(h.at(0)));
  return out;
}

std::vector<int32_t> G2PModel::encode_word(const std::string& word) const {
  ATTN_CHECK(!word.empty(), "predict: empty word");
  std::vector<int32_t> ids;
  for (char c : word) {
    const std::string s(1, c);
    if (!chars_.contains(s)) {
      const auto u = static_cast<unsigned char>(c);
      char shown[8];
      std::snprintf(shown, sizeof shown, u >= 0x20 && u < 0x7f ? "'%c'" : "0x%02x", u);
      std::string known;
      for (int32_t i = chars_.num_specials(); i < chars_.size(); ++i) known += chars_.symbol(i);
      fail("predict: word '", word, "' has character ", shown, " that the model does not know (it knows: ", known,
           ")");
    }
    ids.push_back(chars_.id(s, word));
  }
  return ids;
}

int64_t G2PModel::decoder_layers() const {
  if (kind_ != "transformer") return 0;
  return static_cast<const models::TransformerSeq2Seq&>(*model_).opts.num_decoder_layers;
}

Tensor G2PModel::cross_attention(const std::vector<int32_t>& source, const std::vector<int32_t>& tokens,
                                 int64_t rows, int64_t layer) {
  ATTN_CHECK(kind_ == "transformer", "g2p: per-head cross-attention is only for the transformer, this model is '",
             kind_, "'");
  const int64_t n_layers = decoder_layers();
  ATTN_CHECK(layer >= -n_layers && layer < n_layers, "predict: --layer ", layer, " outside the decoder's ", n_layers,
             " layers (0..", n_layers - 1, ", or -1 for the last)");
  ATTN_CHECK(!source.empty() && rows >= 1 && rows <= static_cast<int64_t>(tokens.size()) + 1,
             "g2p: cross_attention: need a source and 1..", tokens.size() + 1, " rows, got ", rows);
  const int64_t S = static_cast<int64_t>(source.size());
  Tensor src = Tensor::zeros({1, S}, DType::i32);
  std::copy(source.begin(), source.end(), src.data<int32_t>());
  // Row i is the step that reads <bos> t_1 .. t_i and predicts t_{i+1} (or <eos>).
  Tensor tgt_in = Tensor::zeros({1, rows}, DType::i32);
  tgt_in.data<int32_t>()[0] = data::Vocabulary::kBos;
  std::copy(tokens.begin(), tokens.begin() + (rows - 1), tgt_in.data<int32_t>() + 1);
  auto& tf = static_cast<models::TransformerSeq2Seq&>(*model_);
  std::vector<Tensor> per_layer = tf.cross_attention_weights(src, tgt_in);  // each [1, H, rows, S]
  const Tensor& w = per_layer.at(static_cast<size_t>(layer < 0 ? n_layers + layer : layer));
  return w.contiguous().reshape({w.size(1), rows, S});
}

}  // namespace attn::cli::g2p
