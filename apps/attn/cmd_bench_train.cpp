// `attn bench train`: tokens per second of one training step (forward, label-smoothed cross
// entropy, backward, Adam) of a Transformer encoder–decoder, beside the same step in PyTorch
// (bench/compare_torch_train.py, run with /usr/bin/python3 in the same invocation) when torch
// is available. Tokens per step = batch × (source length + target length).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/autograd/ops.h"
#include "attn/core/error.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "attn/models/transformer_seq2seq.h"
#include "attn/optim/adam.h"
#include "cli.h"

namespace attn::cli {

namespace {

struct TrainBenchArgs {
  int threads = 0;  // 0: the global --threads (all cores)
  int steps = 10;
  int warmup = 3;
  int batch = 64;
  int src_len = 32;
  int tgt_len = 32;
  int vocab = 64;
  int d_model = 256;
  int heads = 4;
  int encoder_layers = 4;
  int decoder_layers = 4;
  int ffn = 1024;
  double dropout = 0.1;
  bool post_norm = false;
  bool json = false;
  bool no_torch = false;
  std::string matmul = "f32";  // f32 | bf16: precision of the model's matrix products
  std::string python = "/usr/bin/python3";
  std::string torch_script;  // default: found beside the executable or in ./bench
};

// The batch formula shared with compare_torch_train.py (no padding; BOS = 1).
void make_batch(const TrainBenchArgs& a, Tensor& src, Tensor& tgt_in, Tensor& tgt_out) {
  const int V = a.vocab;
  src = Tensor::empty({a.batch, a.src_len}, DType::i32);
  tgt_in = Tensor::empty({a.batch, a.tgt_len}, DType::i32);
  tgt_out = Tensor::empty({a.batch * a.tgt_len}, DType::i32);
  for (int b = 0; b < a.batch; ++b) {
    for (int i = 0; i < a.src_len; ++i) src.data<int32_t>()[b * a.src_len + i] = 1 + (7 * b + 13 * i + 3) % (V - 1);
    for (int i = 0; i < a.tgt_len; ++i) {
      const int32_t t = 1 + (5 * b + 11 * i + 1) % (V - 1);
      tgt_out.data<int32_t>()[b * a.tgt_len + i] = t;
      if (i + 1 < a.tgt_len) tgt_in.data<int32_t>()[b * a.tgt_len + i + 1] = t;
    }
    tgt_in.data<int32_t>()[b * a.tgt_len] = 1;
  }
}

struct StepTiming {
  double ms_per_step = 0;
  double tokens_per_s = 0;
  double loss = 0;
  int64_t params = 0;
};

StepTiming time_attn(const TrainBenchArgs& a) {
  models::TransformerSeq2SeqOptions o;
  o.src_vocab = o.tgt_vocab = a.vocab;
  o.d_model = a.d_model;
  o.nhead = a.heads;
  o.num_encoder_layers = a.encoder_layers;
  o.num_decoder_layers = a.decoder_layers;
  o.dim_feedforward = a.ffn;
  o.dropout = a.dropout;
  o.norm_first = !a.post_norm;
  o.max_len = std::max(a.src_len, a.tgt_len);
  cpu::MatmulPrecisionScope precision(cpu::parse_matmul_precision(a.matmul.c_str(), "bench train: --matmul"));
  Rng rng(1);
  models::TransformerSeq2Seq model(o, rng);
  model.train();
  optim::AdamOptions ao;
  ao.lr = 1e-4;
  ao.beta2 = 0.98;
  ao.eps = 1e-9;
  optim::Adam adam(model.named_parameters(), ao);
  Tensor src, tgt_in, tgt_out;
  make_batch(a, src, tgt_in, tgt_out);
  double loss = 0;
  auto step = [&] {
    ag::Var logits = model.forward(src, tgt_in);  // [B, T, V]
    ag::Var l = ag::cross_entropy(ag::reshape(logits, {a.batch * a.tgt_len, a.vocab}), tgt_out, /*ignore_index=*/0,
                              /*label_smoothing=*/0.1);
    adam.zero_grad();
    l.backward();
    adam.step(model.named_parameters());
    loss = l.value().get({});
  };
  for (int i = 0; i < a.warmup; ++i) step();
  Timer t;
  for (int i = 0; i < a.steps; ++i) step();
  StepTiming r;
  r.ms_per_step = t.seconds() * 1e3 / a.steps;
  r.tokens_per_s = static_cast<double>(a.batch) * (a.src_len + a.tgt_len) / (r.ms_per_step * 1e-3);
  r.loss = loss;
  r.params = model.num_parameters();
  return r;
}

std::string find_torch_script(const TrainBenchArgs& a) {
  namespace fs = std::filesystem;
  if (!a.torch_script.empty()) return a.torch_script;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "bench" / "compare_torch_train.py");
    candidates.push_back(exe.parent_path() / "bench" / "compare_torch_train.py");
  }
  candidates.push_back(fs::path("bench") / "compare_torch_train.py");
  for (const auto& c : candidates)
    if (fs::exists(c, ec)) return c.string();
  return "";
}

// Runs the PyTorch twin; nullopt (with the reason in `why`) when python, torch or the script
// is missing or the run fails.
std::optional<nlohmann::json> run_torch(const TrainBenchArgs& a, int threads, std::string& why) {
  if (access(a.python.c_str(), X_OK) != 0) {
    why = a.python + " not found";
    return std::nullopt;
  }
  const std::string script = find_torch_script(a);
  if (script.empty()) {
    why = "bench/compare_torch_train.py not found (give --torch-script)";
    return std::nullopt;
  }
  std::string cmd = "'" + a.python + "' '" + script + "'";
  auto arg = [&](const char* name, auto v) { cmd += std::string(" ") + name + " " + std::to_string(v); };
  arg("--threads", threads);
  arg("--steps", a.steps);
  arg("--warmup", a.warmup);
  arg("--batch", a.batch);
  arg("--src-len", a.src_len);
  arg("--tgt-len", a.tgt_len);
  arg("--vocab", a.vocab);
  arg("--d-model", a.d_model);
  arg("--heads", a.heads);
  arg("--encoder-layers", a.encoder_layers);
  arg("--decoder-layers", a.decoder_layers);
  arg("--ffn", a.ffn);
  arg("--dropout", a.dropout);
  if (a.post_norm) cmd += " --post-norm";
  if (a.matmul == "bf16") cmd += " --bf16";  // also time torch.autocast(bf16)
  cmd += " 2>&1";
  note("bench train: " + cmd);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    why = "cannot start " + a.python;
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  // The JSON object is the last line.
  std::string last;
  size_t end = out.find_last_not_of("\n");
  if (end != std::string::npos) {
    size_t start = out.find_last_of('\n', end);
    last = out.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
  }
  if (status != 0 || last.empty() || last[0] != '{') {
    why = out.find("No module named 'torch'") != std::string::npos ? "torch is not installed for " + a.python
                                                                      : "torch run failed: " + last;
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(last);
  } catch (const std::exception& e) {
    why = std::string("torch output unreadable: ") + e.what();
    return std::nullopt;
  }
}

int run_bench_train(const TrainBenchArgs& a) {
  ATTN_CHECK(a.steps >= 1 && a.warmup >= 0, "bench train: --steps ", a.steps, " must be >= 1 and --warmup ", a.warmup,
             " >= 0");
  ATTN_CHECK(a.batch >= 1 && a.src_len >= 1 && a.tgt_len >= 1 && a.vocab >= 3, "bench train: --batch ", a.batch,
             ", --src-len ", a.src_len, ", --tgt-len ", a.tgt_len, " must be >= 1 and --vocab ", a.vocab, " >= 3");
  const bool bf16 = cpu::parse_matmul_precision(a.matmul.c_str(), "bench train: --matmul") == cpu::MatmulPrecision::bf16;
  if (a.threads > 0) set_num_threads(a.threads);
  const int threads = num_threads();
  const int64_t tokens = static_cast<int64_t>(a.batch) * (a.src_len + a.tgt_len);
  if (!a.json) {
    std::printf(
        "attn bench train (%s): Transformer %d+%d layers, d_model %d, %d heads, FFN %d, vocab %d, %s, dropout %g; "
        "batch %d x (src %d + tgt %d) = %lld tokens/step (source + target); Adam; %d warm-up + %d timed steps; "
        "%d threads\n",
        omp_wait_policy().c_str(), a.encoder_layers, a.decoder_layers, a.d_model, a.heads, a.ffn, a.vocab, a.post_norm ? "post-norm" : "pre-norm",
        a.dropout, a.batch, a.src_len, a.tgt_len, static_cast<long long>(tokens), a.warmup, a.steps, threads);
    if (bf16)
      std::printf("matmul bf16 (%s; f32 accumulation); torch also timed under torch.autocast(\"cpu\", dtype=torch.bfloat16)\n",
                  cpu::bf16_gemm_path_name());
    std::fflush(stdout);
  }
  const StepTiming at = time_attn(a);
  std::string why;
  std::optional<nlohmann::json> tj;
  if (a.no_torch)
    why = "--no-torch";
  else
    tj = run_torch(a, threads, why);

  nlohmann::json j;
  j["threads"] = threads;
  j["omp_wait"] = omp_wait_policy();
  j["tokens_per_step"] = tokens;
  j["tokens_counted"] = "source+target";
  j["matmul"] = a.matmul;
  if (bf16) j["matmul_path"] = cpu::bf16_gemm_path_name();
  j["steps"] = a.steps;
  j["warmup"] = a.warmup;
  j["params"] = at.params;
  j["ms_per_step"] = at.ms_per_step;
  j["tokens_per_s"] = at.tokens_per_s;
  j["loss"] = at.loss;
  if (tj) {
    j["torch_version"] = (*tj)["torch"];
    j["torch_ms_per_step"] = (*tj)["ms_per_step"];
    j["torch_tokens_per_s"] = (*tj)["tokens_per_s"];
    j["torch_loss"] = (*tj)["loss"];
    j["ratio"] = at.tokens_per_s / (*tj)["tokens_per_s"].get<double>();
    if (tj->contains("bf16_tokens_per_s")) {
      j["torch_bf16_ms_per_step"] = (*tj)["bf16_ms_per_step"];
      j["torch_bf16_tokens_per_s"] = (*tj)["bf16_tokens_per_s"];
      j["torch_bf16_loss"] = (*tj)["bf16_loss"];
      j["ratio_bf16"] = at.tokens_per_s / (*tj)["bf16_tokens_per_s"].get<double>();
    }
  } else {
    j["torch_note"] = why;
  }
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-8s %12s %10s %8s\n", "", "tokens/s", "ms/step", "loss");
  std::printf("%-8s %12.0f %10.1f %8.4f   (%lld parameters)\n", "attn", at.tokens_per_s, at.ms_per_step, at.loss,
              static_cast<long long>(at.params));
  if (tj) {
    std::printf("%-8s %12.0f %10.1f %8.4f   (torch %s, same wait policy)\n", "torch",
                (*tj)["tokens_per_s"].get<double>(), (*tj)["ms_per_step"].get<double>(), (*tj)["loss"].get<double>(),
                (*tj)["torch"].get<std::string>().c_str());
    if (j.contains("torch_bf16_tokens_per_s"))
      std::printf("%-8s %12.0f %10.1f %8.4f   (torch.autocast bf16)\n", "torch-bf16",
                  j["torch_bf16_tokens_per_s"].get<double>(), j["torch_bf16_ms_per_step"].get<double>(),
                  j["torch_bf16_loss"].get<double>());
    std::printf("attn / torch = %.2fx tokens/s at %d threads\n", j["ratio"].get<double>(), threads);
    if (j.contains("ratio_bf16"))
      std::printf("attn / torch-bf16 = %.2fx tokens/s at %d threads (both with bf16 matrix products)\n",
                  j["ratio_bf16"].get<double>(), threads);
  } else {
    std::printf("torch: not run (%s); attn's figure only\n", why.c_str());
  }
  return 0;
}

}  // namespace

// Called by `attn bench`'s setup (cmd_bench.cpp) to add the `train` sub-subcommand; returns
// the runner that runs it when it was chosen (0 otherwise).
Runner setup_bench_train(CLI::App& bench) {
  auto args = std::make_shared<TrainBenchArgs>();
  CLI::App* tr = bench.add_subcommand(
      "train",
      "Tokens/s of one Transformer encoder-decoder training step (forward, label-smoothed cross entropy, "
      "backward, Adam), beside PyTorch 1.13 when /usr/bin/python3 has torch");
  TrainBenchArgs& a = *args;
  tr->add_option("--threads", a.threads, "Threads for attn and torch (default: the global --threads, else all cores)");
  tr->add_option("--steps", a.steps, "Timed steps");
  tr->add_option("--warmup", a.warmup, "Untimed warm-up steps");
  tr->add_option("--batch", a.batch, "Sequences per batch");
  tr->add_option("--src-len", a.src_len, "Source length");
  tr->add_option("--tgt-len", a.tgt_len, "Target length");
  tr->add_option("--vocab", a.vocab, "Source and target vocabulary size");
  tr->add_option("--d-model", a.d_model, "Model width");
  tr->add_option("--heads", a.heads, "Attention heads");
  tr->add_option("--encoder-layers", a.encoder_layers, "Encoder layers");
  tr->add_option("--decoder-layers", a.decoder_layers, "Decoder layers");
  tr->add_option("--ffn", a.ffn, "Feed-forward width");
  tr->add_option("--dropout", a.dropout, "Dropout");
  tr->add_flag("--post-norm", a.post_norm, "Post-norm layers (torch's default) instead of pre-norm");
  tr->add_flag("--json", a.json, "One JSON object");
  tr->add_flag("--no-torch", a.no_torch, "Do not run the PyTorch twin");
  tr->add_option("--matmul", a.matmul,
                 "Precision of the matrix products: f32, or bf16 (bf16 inputs, f32 accumulation; torch is then "
                 "also timed under torch.autocast bf16)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  tr->add_option("--python", a.python, "Python interpreter with torch");
  tr->add_option("--torch-script", a.torch_script, "Path of bench/compare_torch_train.py");
  return [args, tr]() -> int {
    if (!tr->parsed()) return 0;
    TrainBenchArgs a = *args;
    if (a.threads <= 0) a.threads = global_options().threads;
    return run_bench_train(a);
  };
}

}  // namespace attn::cli
