// `attn bench decode`: words per second of greedy (or beam) decoding with a Transformer
// encoder–decoder, with and without the KV cache (decode/transformer_step_decoder.h). The
// weights are random, so no hypothesis ends early: every word runs max_length steps, the
// worst case for the cache-less decoder, whose step recomputes the whole prefix.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/core/error.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/decode/search.h"
#include "attn/decode/transformer_step_decoder.h"
#include "attn/models/transformer_seq2seq.h"
#include "cli.h"

namespace attn::cli {

namespace {

struct DecodeBenchArgs {
  int threads = 0;
  int words = 256;
  int batch = 256;        // words decoded together
  int max_length = 32;    // output steps, <eos> included
  int beam = 1;           // 1: greedy search
  int src_vocab = 30;     // G2P-like: letters and specials
  int tgt_vocab = 43;     // 39 phonemes and specials
  int d_model = 256;
  int heads = 4;
  int encoder_layers = 3;
  int decoder_layers = 3;
  int ffn = 1024;
  bool no_uncached = false;
  bool json = false;
};

// Words of 4..12 letters (ids 3..src_vocab-1), right-padded per batch.
void make_words(const DecodeBenchArgs& a, int first, int n, Tensor& src, Tensor& len) {
  int S = 0;
  std::vector<int> lengths(n);
  for (int i = 0; i < n; ++i) {
    lengths[i] = 4 + (first + i) * 7 % 9;
    S = std::max(S, lengths[i]);
  }
  src = Tensor::zeros({n, S}, DType::i32);
  len = Tensor::empty({n}, DType::i32);
  for (int i = 0; i < n; ++i) {
    len.data<int32_t>()[i] = lengths[i];
    for (int j = 0; j < lengths[i]; ++j)
      src.data<int32_t>()[i * S + j] = 3 + ((first + i) * 13 + j * 5) % (a.src_vocab - 3);
  }
}

struct DecodeTiming {
  double seconds = 0;
  double cpu_seconds = 0;  // process CPU time, all threads (robust to a busy machine)
  int64_t steps = 0;  // output tokens produced (incl. <eos>)
  std::vector<std::vector<int32_t>> outputs;
};

DecodeTiming time_decode(models::TransformerSeq2Seq& model, const DecodeBenchArgs& a, bool use_cache) {
  decode::TransformerStepDecoderOptions o;
  o.use_cache = use_cache;
  decode::TransformerStepDecoder dec(model, o);
  DecodeTiming t;
  Timer timer;
  const std::clock_t cpu0 = std::clock();
  for (int first = 0; first < a.words; first += a.batch) {
    const int n = std::min(a.batch, a.words - first);
    Tensor src, len;
    make_words(a, first, n, src, len);
    std::vector<decode::Hypothesis> hyps;
    if (a.beam <= 1) {
      decode::SearchOptions so;
      so.max_length = a.max_length;
      hyps = decode::greedy_search(dec, src, len, so);
    } else {
      decode::BeamOptions bo;
      bo.max_length = a.max_length;
      bo.beam_width = a.beam;
      for (auto& h : decode::beam_search(dec, src, len, bo)) hyps.push_back(h.at(0));
    }
    for (auto& h : hyps) {
      t.steps += static_cast<int64_t>(h.tokens.size()) + (h.finished ? 1 : 0);
      t.outputs.push_back(h.tokens);
    }
  }
  t.seconds = timer.seconds();
  t.cpu_seconds = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  return t;
}

int run_bench_decode(const DecodeBenchArgs& a) {
  ATTN_CHECK(a.words >= 1 && a.batch >= 1 && a.max_length >= 1 && a.beam >= 1, "bench decode: --words ", a.words,
             ", --batch ", a.batch, ", --max-length ", a.max_length, ", --beam ", a.beam, " must be >= 1");
  if (a.threads > 0) set_num_threads(a.threads);
  models::TransformerSeq2SeqOptions o;
  o.src_vocab = a.src_vocab;
  o.tgt_vocab = a.tgt_vocab;
  o.d_model = a.d_model;
  o.nhead = a.heads;
  o.num_encoder_layers = a.encoder_layers;
  o.num_decoder_layers = a.decoder_layers;
  o.dim_feedforward = a.ffn;
  o.max_len = std::max(64, a.max_length + 1);
  Rng rng(1);
  models::TransformerSeq2Seq model(o, rng);
  if (!a.json)
    std::printf(
        "attn bench decode: Transformer %d+%d layers, d_model %d, %d heads, FFN %d (random weights); %d words "
        "(4..12 symbols), batch %d, %s, max_length %d; %d threads\n",
        a.encoder_layers, a.decoder_layers, a.d_model, a.heads, a.ffn, a.words, a.batch,
        a.beam <= 1 ? "greedy" : ("beam " + std::to_string(a.beam)).c_str(), a.max_length, num_threads());
  const DecodeTiming cached = time_decode(model, a, true);
  nlohmann::json j;
  j["threads"] = num_threads();
  j["words"] = a.words;
  j["max_length"] = a.max_length;
  j["beam"] = a.beam;
  j["cached_seconds"] = cached.seconds;
  j["cached_cpu_seconds"] = cached.cpu_seconds;
  j["cached_words_per_s"] = a.words / cached.seconds;
  j["cached_tokens_per_s"] = static_cast<double>(cached.steps) / cached.seconds;
  if (!a.no_uncached) {
    const DecodeTiming full = time_decode(model, a, false);
    j["uncached_seconds"] = full.seconds;
    j["uncached_cpu_seconds"] = full.cpu_seconds;
    j["uncached_words_per_s"] = a.words / full.seconds;
    j["speedup"] = full.seconds / cached.seconds;
    j["same_outputs"] = full.outputs == cached.outputs;
  }
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-10s %10s %10s %10s %12s\n", "", "seconds", "CPU s", "words/s", "tokens/s");
  std::printf("%-10s %10.3f %10.3f %10.1f %12.0f\n", "kv-cache", cached.seconds, cached.cpu_seconds,
              a.words / cached.seconds, static_cast<double>(cached.steps) / cached.seconds);
  if (!a.no_uncached)
    std::printf("%-10s %10.3f %10.3f %10.1f %12.0f\nspeed-up %.2fx (wall), %.2fx (CPU); same outputs: %s\n",
                "recompute", j["uncached_seconds"].get<double>(), j["uncached_cpu_seconds"].get<double>(),
                j["uncached_words_per_s"].get<double>(),
                static_cast<double>(cached.steps) / j["uncached_seconds"].get<double>(), j["speedup"].get<double>(),
                j["uncached_cpu_seconds"].get<double>() / cached.cpu_seconds,
                j["same_outputs"].get<bool>() ? "yes" : "NO");
  return 0;
}

}  // namespace

// Called by `attn bench`'s setup (cmd_bench.cpp) to add the `decode` sub-subcommand; the
// runner returns 0 without doing anything when `decode` was not chosen.
Runner setup_bench_decode(CLI::App& bench) {
  auto args = std::make_shared<DecodeBenchArgs>();
  CLI::App* dc = bench.add_subcommand(
      "decode", "Words/s of Transformer greedy or beam decoding with and without the KV cache (random weights)");
  DecodeBenchArgs& a = *args;
  dc->add_option("--threads", a.threads, "Threads (default: the global --threads, else all cores)");
  dc->add_option("--words", a.words, "Words decoded");
  dc->add_option("--batch", a.batch, "Words decoded together");
  dc->add_option("--max-length", a.max_length, "Output steps per word (<eos> included)");
  dc->add_option("--beam", a.beam, "Beam width (1: greedy)");
  dc->add_option("--src-vocab", a.src_vocab, "Source vocabulary size");
  dc->add_option("--tgt-vocab", a.tgt_vocab, "Target vocabulary size");
  dc->add_option("--d-model", a.d_model, "Model width");
  dc->add_option("--heads", a.heads, "Attention heads");
  dc->add_option("--encoder-layers", a.encoder_layers, "Encoder layers");
  dc->add_option("--decoder-layers", a.decoder_layers, "Decoder layers");
  dc->add_option("--ffn", a.ffn, "Feed-forward width");
  dc->add_flag("--no-uncached", a.no_uncached, "Time the cached decoder only");
  dc->add_flag("--json", a.json, "One JSON object");
  return [args, dc]() -> int {
    if (!dc->parsed()) return 0;
    DecodeBenchArgs a = *args;
    if (a.threads <= 0) a.threads = global_options().threads;
    return run_bench_decode(a);
  };
}

}  // namespace attn::cli
