// `attn attend`: attention forward (and backward) on .npy files or generated data, through
// the public API of include/attn/attention/attention.h. Everything is computed first and
// only then are the outputs written, all or nothing, so a failed run leaves no file behind.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attn/attention/attention.h"
#include "attn/core/error.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/core/timer.h"
#include "attn/io/npy.h"
#include "cli.h"

namespace attn::cli {
namespace {

struct AttendArgs {
  std::string q, k, v, generate;
  std::string score = "scaled_dot";
  double scale = 0, temperature = 1;
  std::string w, wq, wk, va;
  bool causal = false;
  int64_t query_offset = 0;
  std::string window;
  std::string key_lengths, bias;
  double dropout = 0;
  uint64_t seed = 0;
  std::string backend = "auto";
  bool check_finite = false;
  std::string out, lse, weights;
  std::string grad_out, dq, dk, dv, dw, dwq, dwk, dva, dbias, dtemperature;
  bool check = false;
  double tolerance = 1e-4;
  bool quiet = false;

  // Options whose presence (not only value) matters.
  CLI::Option *scale_opt = nullptr, *temperature_opt = nullptr, *query_offset_opt = nullptr,
              *seed_opt = nullptr, *tolerance_opt = nullptr;
};

// Output flags and the gradient flags, by name, for validation loops.
struct PathFlag {
  const char* flag;
  const std::string* path;
};

std::vector<int64_t> parse_int_list(const std::string& text, size_t count, const char* flag,
                                    const char* form) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      fail(flag, " ", text, ": '", item, "' is not an integer; expected ", form);
    out.push_back(x);
  }
  if (out.size() != count || (!text.empty() && text.back() == ','))
    fail(flag, " ", text, ": expected ", count, " comma-separated integers ", form);
  return out;
}

AttentionBackend parse_backend(const std::string& name) {
  if (name == "auto") return AttentionBackend::automatic;
  if (name == "reference") return AttentionBackend::reference;
  if (name == "fused") return AttentionBackend::fused;
  fail("--backend ", name, ": unknown backend; expected auto, reference or fused");
}

// Reads a floating-point input (q, k, v, weights, bias, dout); integers are refused so that a
// mixed-up file is caught here with its name rather than deep in the attention checks.
Tensor read_float_input(const std::string& path, const char* flag) {
  io::NpyInfo info;
  Tensor t = io::read_npy(path, &info);
  if (t.dtype() != DType::f32)
    fail(flag, " ", path, ": holds ", info.dtype_name, " data; expected floating point (float32 or float64)");
  if (!info.conversion.empty()) note(path + ": converted " + info.conversion);
  return t;
}

Tensor read_key_lengths(const std::string& path) {
  io::NpyInfo info;
  Tensor t = io::read_npy(path, &info);
  if (t.dtype() != DType::i32 || info.dtype_name == "bool")
    fail("--key-lengths ", path, ": holds ", info.dtype_name,
         " data; expected integers [B] (int32 or int64)");
  if (!info.conversion.empty()) note(path + ": converted " + info.conversion);
  return t;
}

Tensor random_normal(const Shape& shape, Rng& rng, double stddev) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal() * stddev);
  return t;
}

// Largest |a - b| (shapes must match); equal infinities (lse = -inf for empty rows) count as 0.
double max_abs_diff(const Tensor& a, const Tensor& b, const char* what) {
  ATTN_CHECK(a.shape() == b.shape(), "--check: ", what, " has shape ", shape_str(a.shape()),
             " but the reference gives ", shape_str(b.shape()));
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == y[i]) continue;  // also equal infinities
    const double d = std::fabs(static_cast<double>(x[i]) - static_cast<double>(y[i]));
    m = std::max(m, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  return m;
}

double max_abs_finite(const Tensor& t) {
  double m = 0;
  for (float x : t.to_vector())
    if (std::isfinite(x)) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

void validate(const AttendArgs& a, ScoreFn score) {
  // Inputs: files or --generate.
  const bool any_file = !a.q.empty() || !a.k.empty() || !a.v.empty();
  if (!a.generate.empty() && any_file)
    fail("--generate makes q, k and v; do not also give --q, --k or --v");
  if (a.generate.empty()) {
    if (!any_file) fail("no input: give --q, --k and --v (.npy files) or --generate B,Hq,Hkv,Nq,Nk,D");
    for (auto [flag, path] : {PathFlag{"--q", &a.q}, PathFlag{"--k", &a.k}, PathFlag{"--v", &a.v}})
      if (path->empty()) fail("--q, --k and --v go together: ", flag, " is missing");
  }
  // Parameters that belong to one score function.
  if (a.scale_opt->count() && score != ScoreFn::scaled_dot)
    fail("--scale applies only to --score scaled_dot (got ", score_fn_name(score), ")");
  if (a.temperature_opt->count() && score != ScoreFn::cosine)
    fail("--temperature applies only to --score cosine (got ", score_fn_name(score), ")");
  if (!a.w.empty() && score != ScoreFn::general)
    fail("--w applies only to --score general (got ", score_fn_name(score), ")");
  for (auto [flag, path] : {PathFlag{"--wq", &a.wq}, PathFlag{"--wk", &a.wk}, PathFlag{"--va", &a.va}})
    if (!path->empty() && score != ScoreFn::additive)
      fail(flag, " applies only to --score additive (got ", score_fn_name(score), ")");
  if (a.generate.empty()) {
    if (score == ScoreFn::general && a.w.empty())
      fail("--score general needs --w w.npy [D, Dk]");
    if (score == ScoreFn::additive)
      for (auto [flag, path] : {PathFlag{"--wq", &a.wq}, PathFlag{"--wk", &a.wk}, PathFlag{"--va", &a.va}})
        if (path->empty()) fail("--score additive needs --wq [A, D], --wk [A, Dk] and --va [A]: ", flag, " is missing");
  }
  // Masks and dropout.
  if (a.query_offset_opt->count() && !a.causal && a.window.empty())
    fail("--query-offset applies only with --causal or --window");
  if (a.seed_opt->count() && a.dropout == 0 && a.generate.empty())
    fail("--seed applies only with --dropout or --generate");
  if (a.tolerance_opt->count() && !a.check) fail("--tolerance applies only with --check");
  if (!(a.tolerance >= 0)) fail("--tolerance ", a.tolerance, ": must be >= 0");
  // Gradients.
  const std::vector<PathFlag> grads = {{"--dq", &a.dq},   {"--dk", &a.dk},     {"--dv", &a.dv},
                                       {"--dw", &a.dw},   {"--dwq", &a.dwq},   {"--dwk", &a.dwk},
                                       {"--dva", &a.dva}, {"--dbias", &a.dbias},
                                       {"--dtemperature", &a.dtemperature}};
  bool any_grad = false;
  for (const auto& g : grads) {
    if (g.path->empty()) continue;
    any_grad = true;
    if (a.grad_out.empty()) fail(g.flag, " needs --grad-out do.npy (the gradient of the loss with respect to out)");
  }
  if (!a.grad_out.empty() && !any_grad && !a.check)
    fail("--grad-out without a gradient output: add --dq/--dk/--dv/... (or --check to compare the backward)");
  if (!a.dw.empty() && score != ScoreFn::general) fail("--dw applies only to --score general");
  for (auto [flag, path] : {PathFlag{"--dwq", &a.dwq}, PathFlag{"--dwk", &a.dwk}, PathFlag{"--dva", &a.dva}})
    if (!path->empty() && score != ScoreFn::additive) fail(flag, " applies only to --score additive");
  if (!a.dtemperature.empty() && score != ScoreFn::cosine) fail("--dtemperature applies only to --score cosine");
  if (!a.dbias.empty() && a.bias.empty()) fail("--dbias needs --bias");
  // Output paths: distinct, and none overwrites an input.
  std::set<std::string> inputs = {a.q, a.k, a.v, a.w, a.wq, a.wk, a.va, a.key_lengths, a.bias, a.grad_out};
  std::set<std::string> outputs;
  std::vector<PathFlag> outs = {{"--out", &a.out}, {"--lse", &a.lse}, {"--weights", &a.weights}};
  outs.insert(outs.end(), grads.begin(), grads.end());
  for (const auto& o : outs) {
    if (o.path->empty()) continue;
    if (!outputs.insert(*o.path).second) fail(o.flag, " ", *o.path, ": the same file is given for two outputs");
    if (inputs.count(*o.path)) fail(o.flag, " ", *o.path, ": would overwrite an input file");
  }
}

int run_attend(const AttendArgs& a) {
  const ScoreFn score = parse_score_fn(a.score);
  validate(a, score);

  AttentionOptions opts;
  opts.score = score;
  if (a.scale_opt->count()) opts.scale = a.scale;
  opts.temperature = a.temperature;
  opts.causal = a.causal;
  opts.query_offset = a.query_offset;
  if (!a.window.empty()) {
    auto lr = parse_int_list(a.window, 2, "--window", "L,R (keys p-L .. p+R are visible)");
    if (lr[0] < 0 || lr[1] < 0) fail("--window ", a.window, ": L and R must be >= 0");
    opts.window = Window{lr[0], lr[1]};
  }
  opts.dropout = a.dropout;
  opts.seed = a.seed;
  opts.need_weights = !a.weights.empty();
  opts.check_finite = a.check_finite;
  opts.backend = parse_backend(a.backend);

  // ---- inputs ----
  Tensor q, k, v;
  AttentionExtras extras;
  if (!a.w.empty()) extras.w = read_float_input(a.w, "--w");
  if (!a.wq.empty()) extras.wq = read_float_input(a.wq, "--wq");
  if (!a.wk.empty()) extras.wk = read_float_input(a.wk, "--wk");
  if (!a.va.empty()) extras.va = read_float_input(a.va, "--va");
  if (!a.generate.empty()) {
    auto g = parse_int_list(a.generate, 6, "--generate", "B,Hq,Hkv,Nq,Nk,D");
    for (int64_t x : g)
      if (x < 1) fail("--generate ", a.generate, ": every size must be >= 1");
    const int64_t B = g[0], Hq = g[1], Hkv = g[2], Nq = g[3], Nk = g[4], D = g[5];
    // A stream apart from dropout's, which draws counter_random(seed, ·) directly.
    Rng rng(mix64(a.seed ^ 0x6a09e667f3bcc908ULL));
    q = random_normal({B, Hq, Nq, D}, rng, 1.0);
    k = random_normal({B, Hkv, Nk, D}, rng, 1.0);
    v = random_normal({B, Hkv, Nk, D}, rng, 1.0);
    const double s = 1.0 / std::sqrt(static_cast<double>(D));
    if (score == ScoreFn::general && !extras.w.defined()) extras.w = random_normal({D, D}, rng, s);
    if (score == ScoreFn::additive) {  // A = D
      if (!extras.wq.defined()) extras.wq = random_normal({D, D}, rng, s);
      if (!extras.wk.defined()) extras.wk = random_normal({D, D}, rng, s);
      if (!extras.va.defined()) extras.va = random_normal({D}, rng, s);
    }
  } else {
    q = read_float_input(a.q, "--q");
    k = read_float_input(a.k, "--k");
    v = read_float_input(a.v, "--v");
  }
  if (!a.key_lengths.empty()) extras.key_lengths = read_key_lengths(a.key_lengths);
  if (!a.bias.empty()) extras.bias = read_float_input(a.bias, "--bias");
  Tensor dout;
  if (!a.grad_out.empty()) dout = read_float_input(a.grad_out, "--grad-out");

  // ---- compute ----
  Timer timer;
  AttentionOutput fwd = attention_forward(q, k, v, extras, opts);
  const double forward_ms = timer.seconds() * 1e3;
  AttentionGrads grads;
  double backward_ms = 0;
  if (dout.defined()) {
    timer.reset();
    grads = attention_backward(q, k, v, extras, opts, fwd, dout);
    backward_ms = timer.seconds() * 1e3;
  }

  // ---- summary (printed once the outputs are written) ----
  std::string summary;
  {
    std::ostringstream os;
    os << "attend: q " << shape_str(q.shape()) << ", k " << shape_str(k.shape()) << ", v "
       << shape_str(v.shape()) << " -> out " << shape_str(fwd.out.shape()) << "; score "
       << score_fn_name(score);
    if (opts.causal) os << ", causal";
    if (opts.window) os << ", window " << opts.window->left << "," << opts.window->right;
    if (opts.query_offset) os << ", query offset " << opts.query_offset;
    if (extras.key_lengths.defined()) os << ", key lengths";
    if (extras.bias.defined()) os << ", bias";
    if (opts.dropout > 0) os << ", dropout " << opts.dropout;
    os << "; backend " << a.backend << ", " << num_threads() << " thread"
       << (num_threads() == 1 ? "" : "s") << std::fixed << std::setprecision(2) << "; forward "
       << forward_ms << " ms";
    if (dout.defined()) os << ", backward " << backward_ms << " ms";
    summary = os.str();
  }

  // ---- --check: the same request on the reference backend ----
  std::string check_line;
  if (a.check) {
    AttentionOptions ref_opts = opts;
    ref_opts.backend = AttentionBackend::reference;
    AttentionOutput ref = attention_forward(q, k, v, extras, ref_opts);
    std::vector<std::tuple<const char*, Tensor, Tensor>> pairs = {{"out", fwd.out, ref.out},
                                                                  {"lse", fwd.lse, ref.lse}};
    if (opts.need_weights) pairs.emplace_back("weights", fwd.weights, ref.weights);
    if (dout.defined()) {
      AttentionGrads rg = attention_backward(q, k, v, extras, ref_opts, ref, dout);
      for (auto [name, mine, theirs] :
           {std::tuple{"dq", grads.dq, rg.dq}, std::tuple{"dk", grads.dk, rg.dk}, std::tuple{"dv", grads.dv, rg.dv},
            std::tuple{"dw", grads.dw, rg.dw}, std::tuple{"dwq", grads.dwq, rg.dwq},
            std::tuple{"dwk", grads.dwk, rg.dwk}, std::tuple{"dva", grads.dva, rg.dva},
            std::tuple{"dbias", grads.dbias, rg.dbias}})
        if (mine.defined() || theirs.defined()) pairs.emplace_back(name, mine, theirs);
      if (score == ScoreFn::cosine)
        pairs.emplace_back("dtemperature", Tensor::full({}, static_cast<float>(grads.dtemperature)),
                           Tensor::full({}, static_cast<float>(rg.dtemperature)));
    }
    std::ostringstream os;
    os << std::scientific << std::setprecision(2);
    std::string failed;
    os << "check vs reference: max |diff|";
    for (auto& [name, mine, theirs] : pairs) {
      ATTN_CHECK(mine.defined() && theirs.defined(), "--check: ", name,
                 " is missing from one of the two backends");
      const double diff = max_abs_diff(mine, theirs, name);
      const double limit = a.tolerance * std::max(1.0, max_abs_finite(theirs));
      os << " " << name << " " << diff;
      if (!(diff <= limit) && failed.empty())
        failed = detail::concat("max |", name, " - reference| = ", diff, " > tolerance ", limit);
    }
    os << " (tolerance " << a.tolerance << " x max(1, max |reference|))";
    if (!failed.empty()) {
      std::fprintf(stderr, "attn attend: check failed: %s; no output written\n", failed.c_str());
      return 1;
    }
    check_line = os.str() + ": ok";
  }

  // ---- outputs, all or nothing ----
  std::vector<std::pair<std::string, Tensor>> files;
  auto add = [&](const std::string& path, const Tensor& t, const char* flag) {
    if (path.empty()) return;
    ATTN_CHECK(t.defined(), flag, " ", path, ": the attention call returned no such tensor");
    files.emplace_back(path, t);
  };
  add(a.out, fwd.out, "--out");
  add(a.lse, fwd.lse, "--lse");
  add(a.weights, fwd.weights, "--weights");
  add(a.dq, grads.dq, "--dq");
  add(a.dk, grads.dk, "--dk");
  add(a.dv, grads.dv, "--dv");
  add(a.dw, grads.dw, "--dw");
  add(a.dwq, grads.dwq, "--dwq");
  add(a.dwk, grads.dwk, "--dwk");
  add(a.dva, grads.dva, "--dva");
  add(a.dbias, grads.dbias, "--dbias");
  if (!a.dtemperature.empty())
    files.emplace_back(a.dtemperature, Tensor::full({}, static_cast<float>(grads.dtemperature)));
  io::write_npy_files(files);
  if (!a.quiet) {
    std::printf("%s\n", summary.c_str());
    if (!check_line.empty()) std::printf("%s\n", check_line.c_str());
  }
  return 0;
}

const char* kFooter = R"(Shapes (2-D [N, D] and 3-D [H, N, D] inputs mean B = 1 / H = 1; outputs keep that rank):
  q [B, Hq, Nq, D]   k [B, Hkv, Nk, Dk]   v [B, Hkv, Nk, Dv]   Hq a multiple of Hkv (grouped-query)
  out [B, Hq, Nq, Dv]   lse [B, Hq, Nq] (-inf for a row with no visible key)   weights [B, Hq, Nq, Nk]
  Dk = D except for general and additive.
Score functions s(q, k): dot q.k; scaled_dot q.k * scale; cosine cos(q, k) / temperature;
  general q^T W k (Luong 2015); additive va^T tanh(Wq q + Wk k) (Bahdanau 2015).
Inputs are .npy files (float32; float64 is converted, --verbose says so). Outputs are float32
.npy files, written only after everything succeeded, all or nothing.
Exit status: 0 ok, 1 --check failed, 2 bad input (one line on stderr).
Example: attn attend --generate 1,8,8,512,512,64 --check)";

ATTN_SUBCOMMAND("attend", "Run attention (forward, optionally backward) on .npy files or generated data",
  [](CLI::App& app) -> Runner {
    auto a = std::make_shared<AttendArgs>();
    app.footer(kFooter);
    const char* in = "Inputs";
    const char* sc = "Score function";
    const char* mk = "Masks and dropout";
    const char* ru = "Running";
    const char* ou = "Outputs (.npy, float32)";
    const char* gr = "Backward (gradients of sum(grad_out * out))";
    app.add_option("--q", a->q, "Queries q [B, Hq, Nq, D]")->type_name("FILE")->group(in);
    app.add_option("--k", a->k, "Keys k [B, Hkv, Nk, Dk]")->type_name("FILE")->group(in);
    app.add_option("--v", a->v, "Values v [B, Hkv, Nk, Dv]")->type_name("FILE")->group(in);
    app.add_option("--generate", a->generate,
                   "Instead of --q/--k/--v: random normal q, k, v of these sizes (seeded by --seed; "
                   "also makes a missing --w, or --wq/--wk/--va with A = D)")
        ->type_name("B,Hq,Hkv,Nq,Nk,D")->group(in);
    app.add_option("--score", a->score, "Score function: dot, scaled_dot, cosine, general, additive")
        ->type_name("FN")->default_str("scaled_dot")->group(sc);
    a->scale_opt = app.add_option("--scale", a->scale, "scaled_dot: multiply q.k by S (default 1/sqrt(D))")
                       ->type_name("S")->group(sc);
    a->temperature_opt = app.add_option("--temperature", a->temperature,
                                        "cosine: divide cos(q, k) by T > 0 (default 1)")
                             ->type_name("T")->group(sc);
    app.add_option("--w", a->w, "general: W [D, Dk] in q^T W k")->type_name("FILE")->group(sc);
    app.add_option("--wq", a->wq, "additive: Wq [A, D]")->type_name("FILE")->group(sc);
    app.add_option("--wk", a->wk, "additive: Wk [A, Dk]")->type_name("FILE")->group(sc);
    app.add_option("--va", a->va, "additive: va [A]")->type_name("FILE")->group(sc);
    app.add_flag("--causal", a->causal, "Causal mask: query i sees key j when j <= i + query offset")->group(mk);
    a->query_offset_opt = app.add_option("--query-offset", a->query_offset,
                                         "Position of query i is i + N for --causal and --window "
                                         "(Nk - Nq aligns the last query with the last key)")
                              ->type_name("N")->group(mk);
    app.add_option("--window", a->window, "Sliding window: query at position p sees keys p-L .. p+R")
        ->type_name("L,R")->group(mk);
    app.add_option("--key-lengths", a->key_lengths,
                   "Padding mask: [B] int32 or int64; batch b sees keys j < key_lengths[b]")
        ->type_name("FILE")->group(mk);
    app.add_option("--bias", a->bias,
                   "Additive bias [B|1, Hq|1, Nq, Nk] or [Nq, Nk] added to the scores; -inf hides a key")
        ->type_name("FILE")->group(mk);
    app.add_option("--dropout", a->dropout, "Dropout rate P in [0, 1) on the weights (kept ones scaled by 1/(1-P))")
        ->type_name("P")->group(mk);
    a->seed_opt = app.add_option("--seed", a->seed, "Seed of the dropout mask and of --generate (default 0)")
                      ->type_name("S")->group(mk);
    app.add_option("--backend", a->backend,
                   "auto (fused kernel when it supports the request), reference (double-precision "
                   "oracle) or fused")
        ->type_name("NAME")->default_str("auto")->group(ru);
    app.add_flag("--check-finite", a->check_finite, "Fail if q, k, v or the bias hold NaN or Inf")->group(ru);
    app.add_flag("--check", a->check,
                 "Also run the reference backend and print the max abs difference of every output "
                 "(and gradient); exit 1 if above the tolerance")
        ->group(ru);
    a->tolerance_opt = app.add_option("--tolerance", a->tolerance,
                                      "--check fails when max |x - ref| > T * max(1, max |ref|) (default 1e-4)")
                           ->type_name("T")->group(ru);
    app.add_flag("-q,--quiet", a->quiet, "Print nothing on success (no summary line)")->group(ru);
    app.add_option("--out", a->out, "Write out [B, Hq, Nq, Dv]")->type_name("FILE")->group(ou);
    app.add_option("--lse", a->lse, "Write the log-sum-exp of each row's scores [B, Hq, Nq]")
        ->type_name("FILE")->group(ou);
    app.add_option("--weights", a->weights, "Write the attention weights [B, Hq, Nq, Nk] (materialises Nq x Nk)")
        ->type_name("FILE")->group(ou);
    app.add_option("--grad-out", a->grad_out, "Read dout = d loss / d out [B, Hq, Nq, Dv]; runs the backward")
        ->type_name("FILE")->group(gr);
    app.add_option("--dq", a->dq, "Write dq (shape of q)")->type_name("FILE")->group(gr);
    app.add_option("--dk", a->dk, "Write dk (shape of k)")->type_name("FILE")->group(gr);
    app.add_option("--dv", a->dv, "Write dv (shape of v)")->type_name("FILE")->group(gr);
    app.add_option("--dw", a->dw, "general: write dW [D, Dk]")->type_name("FILE")->group(gr);
    app.add_option("--dwq", a->dwq, "additive: write dWq [A, D]")->type_name("FILE")->group(gr);
    app.add_option("--dwk", a->dwk, "additive: write dWk [A, Dk]")->type_name("FILE")->group(gr);
    app.add_option("--dva", a->dva, "additive: write dva [A]")->type_name("FILE")->group(gr);
    app.add_option("--dbias", a->dbias, "Write dbias (shape of the --bias given; broadcast dims summed)")
        ->type_name("FILE")->group(gr);
    app.add_option("--dtemperature", a->dtemperature, "cosine: write d loss / d temperature (0-d array)")
        ->type_name("FILE")->group(gr);
    return [a] { return run_attend(*a); };
  });

}  // namespace
}  // namespace attn::cli
