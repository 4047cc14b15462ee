// `attn attend` end to end: the built binary (ATTN_CLI_PATH) on .npy files in a temp dir must
// give exactly what attention_forward / attention_backward give when called directly, and
// must refuse bad input with exit status 2, one line on stderr and no output file.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "attn/attention/attention.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/io/atomic_file.h"
#include "attn/io/npy.h"

namespace attn {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int status = -1;
  std::string out, err;
};

class AttendCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/attn_cli_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    set_num_threads(1);  // the CLI runs with --threads 1: same reduction order
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Runs `attn <args>` (each argument single-quoted), capturing stdout and stderr.
  RunResult run(const std::vector<std::string>& args) const {
    std::string cmd = std::string("'") + ATTN_CLI_PATH + "'";
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " >'" + dir_ + "/.stdout' 2>'" + dir_ + "/.stderr'";
    RunResult r;
    const int raw = std::system(cmd.c_str());
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = io::read_file(dir_ + "/.stdout");
    r.err = io::read_file(dir_ + "/.stderr");
    fs::remove(dir_ + "/.stdout");
    fs::remove(dir_ + "/.stderr");
    return r;
  }

  // Writes a random normal f32 tensor to <name>.npy and returns it.
  Tensor input(const std::string& name, const Shape& shape, double stddev = 1.0) {
    Tensor t = Tensor::empty(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng_.normal() * stddev);
    save(name, t);
    return t;
  }

  // Test inputs are written plainly (no fsync: the atomic writer is tested in test_io).
  void save(const std::string& name, const Tensor& t) const {
    std::ofstream f(path(name), std::ios::binary);
    io::encode_npy(t, [&](const void* p, size_t n) { f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n)); });
  }
  void save_bytes(const std::string& name, const std::string& bytes) const {
    std::ofstream f(path(name), std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
  Rng rng_{2024};
};

// The file's tensor equals `expected` exactly: shape first, then every value (same code on
// the same inputs with one thread, so no tolerance is needed).
void expect_file_equals(const std::string& file, const Tensor& expected) {
  SCOPED_TRACE(file);
  ASSERT_TRUE(expected.defined());
  ASSERT_TRUE(fs::exists(file)) << file << " was not written";
  Tensor got = io::read_npy(file);
  ASSERT_EQ(got.shape(), expected.shape()) << shape_str(got.shape()) << " vs " << shape_str(expected.shape());
  const std::vector<float> g = got.to_vector(), e = expected.to_vector();
  int shown = 0;
  double max_diff = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool same = g[i] == e[i] || (std::isnan(g[i]) && std::isnan(e[i]));
    if (!same) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(g[i]) - e[i]));
      if (shown++ < 5) ADD_FAILURE() << "index " << i << ": file " << g[i] << ", library " << e[i];
    }
  }
  EXPECT_EQ(shown, 0) << shown << " mismatches, max |diff| " << max_diff;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- the CLI equals the library, for every score function and mask ----

struct Case {
  std::string name;
  std::vector<std::string> flags;  // extra CLI flags (files referenced must exist)
  AttentionOptions opts;
  bool with_bias = false;
  std::vector<int32_t> key_lengths;  // [B]; empty: no padding mask
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class AttendMatchesLibrary : public AttendCli, public ::testing::WithParamInterface<Case> {
 protected:
  // Runs one case through the CLI (forward + backward, every output) and through the library.
  void check(const Case& c) {
    SCOPED_TRACE(c.name);
    constexpr int64_t B = 2, Hq = 4, Hkv = 2, Nq = 5, Nk = 7, D = 3, Dk = 6, Dv = 2, A = 4;
    const ScoreFn score = c.opts.score;
    const int64_t dk = (score == ScoreFn::general || score == ScoreFn::additive) ? Dk : D;
    Tensor q = input("q.npy", {B, Hq, Nq, D});
    Tensor k = input("k.npy", {B, Hkv, Nk, dk});
    Tensor v = input("v.npy", {B, Hkv, Nk, Dv});
    Tensor dout = input("do.npy", {B, Hq, Nq, Dv});
    AttentionExtras ex;
    std::vector<std::string> args = {"attend", "--threads", "1", "--backend", "reference", "--quiet",
                                     "--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                                     "--score", score_fn_name(score), "--out", path("o.npy"),
                                     "--lse", path("lse.npy"), "--weights", path("wts.npy"),
                                     "--grad-out", path("do.npy"), "--dq", path("dq.npy"),
                                     "--dk", path("dk.npy"), "--dv", path("dv.npy")};
    if (score == ScoreFn::general) {
      ex.w = input("w.npy", {D, Dk}, 0.5);
      args.insert(args.end(), {"--w", path("w.npy"), "--dw", path("dw.npy")});
    }
    if (score == ScoreFn::additive) {
      ex.wq = input("wq.npy", {A, D}, 0.5);
      ex.wk = input("wk.npy", {A, Dk}, 0.5);
      ex.va = input("va.npy", {A});
      args.insert(args.end(), {"--wq", path("wq.npy"), "--wk", path("wk.npy"), "--va", path("va.npy"),
                               "--dwq", path("dwq.npy"), "--dwk", path("dwk.npy"), "--dva", path("dva.npy")});
    }
    if (score == ScoreFn::cosine) args.insert(args.end(), {"--dtemperature", path("dtemp.npy")});
    if (c.with_bias) {
      ex.bias = input("bias.npy", {1, Hq, Nq, Nk});
      ex.bias.set({0, 1, 2, 3}, -INFINITY);
      save("bias.npy", ex.bias);
      args.insert(args.end(), {"--bias", path("bias.npy"), "--dbias", path("dbias.npy")});
    }
    if (!c.key_lengths.empty()) {
      ex.key_lengths = Tensor::from_vector_i32(c.key_lengths, {B});
      save("kl.npy", ex.key_lengths);
      args.insert(args.end(), {"--key-lengths", path("kl.npy")});
    }
    args.insert(args.end(), c.flags.begin(), c.flags.end());

    AttentionOptions opts = c.opts;
    opts.backend = AttentionBackend::reference;
    opts.need_weights = true;
    AttentionOutput fwd = attention_forward(q, k, v, ex, opts);
    AttentionGrads g = attention_backward(q, k, v, ex, opts, fwd, dout);

    RunResult r = run(args);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "");  // --quiet
    expect_file_equals(path("o.npy"), fwd.out);
    expect_file_equals(path("lse.npy"), fwd.lse);
    expect_file_equals(path("wts.npy"), fwd.weights);
    expect_file_equals(path("dq.npy"), g.dq);
    expect_file_equals(path("dk.npy"), g.dk);
    expect_file_equals(path("dv.npy"), g.dv);
    if (score == ScoreFn::general) expect_file_equals(path("dw.npy"), g.dw);
    if (score == ScoreFn::additive) {
      expect_file_equals(path("dwq.npy"), g.dwq);
      expect_file_equals(path("dwk.npy"), g.dwk);
      expect_file_equals(path("dva.npy"), g.dva);
    }
    if (score == ScoreFn::cosine)
      expect_file_equals(path("dtemp.npy"), Tensor::full({}, static_cast<float>(g.dtemperature)));
    if (c.with_bias) expect_file_equals(path("dbias.npy"), g.dbias);
    // Nothing else (no temporaries) is left in the directory.
    for (const auto& f : files()) EXPECT_EQ(f.find(".tmp."), std::string::npos) << f;
  }
};

AttentionOptions opts_of(ScoreFn s, bool causal = false, int64_t query_offset = 0,
                         std::optional<Window> window = std::nullopt, double dropout = 0, uint64_t seed = 0) {
  AttentionOptions o;
  o.score = s;
  o.causal = causal;
  o.query_offset = query_offset;
  o.window = window;
  o.dropout = dropout;
  o.seed = seed;
  return o;
}

AttentionOptions scaled_by(double scale) {
  AttentionOptions o;
  o.scale = scale;
  return o;
}

AttentionOptions cosine_at(double temperature) {
  AttentionOptions o = opts_of(ScoreFn::cosine);
  o.temperature = temperature;
  return o;
}

Case make_case(std::string name, std::vector<std::string> flags, AttentionOptions opts, bool with_bias = false,
               std::vector<int32_t> key_lengths = {}) {
  return Case{std::move(name), std::move(flags), opts, with_bias, std::move(key_lengths)};
}

const Case kCases[] = {
    // Every score function.
    make_case("dot", {}, opts_of(ScoreFn::dot)),
    make_case("scaled_dot", {}, opts_of(ScoreFn::scaled_dot)),
    make_case("scaled_dot_scale", {"--scale", "0.3"}, scaled_by(0.3)),
    make_case("cosine_temperature", {"--temperature", "0.25"}, cosine_at(0.25)),
    make_case("general", {}, opts_of(ScoreFn::general)),
    make_case("additive", {}, opts_of(ScoreFn::additive)),
    // Every mask, and dropout.
    make_case("causal", {"--causal"}, opts_of(ScoreFn::scaled_dot, true)),
    make_case("causal_query_offset", {"--causal", "--query-offset", "2"}, opts_of(ScoreFn::scaled_dot, true, 2)),
    make_case("window", {"--window", "1,2"}, opts_of(ScoreFn::scaled_dot, false, 0, Window{1, 2})),
    make_case("window_negative_query_offset", {"--window", "1,2", "--query-offset=-1"},
     opts_of(ScoreFn::scaled_dot, false, -1, Window{1, 2})),
    make_case("key_lengths", {}, opts_of(ScoreFn::scaled_dot), false, {4, 7}),
    make_case("bias", {}, opts_of(ScoreFn::scaled_dot), true),
    make_case("dropout", {"--dropout", "0.3", "--seed", "11"}, opts_of(ScoreFn::scaled_dot, false, 0, {}, 0.3, 11)),
    // Everything at once; batch 0 has no visible key (out 0, lse -inf).
    make_case("additive_causal_window_key_lengths_bias", {"--causal", "--window", "2,0"},
     opts_of(ScoreFn::additive, true, 0, Window{2, 0}), true, {0, 5}),
};

TEST_P(AttendMatchesLibrary, OutputsAndGradients) { check(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, AttendMatchesLibrary, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST_F(AttendCli, KeyLengthsMayBeInt64AndInputsFloat64) {
  Tensor q = input("q.npy", {2, 2, 3, 4});
  Tensor k = input("k.npy", {2, 2, 5, 4});
  Tensor v = input("v.npy", {2, 2, 5, 4});
  // The same data as float64 and the key lengths as int64, written by hand.
  auto write_f64 = [&](const std::string& name, const Tensor& t) {
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 3, 4), }";
    header += std::string(64 - (10 + header.size() + 1) % 64, ' ') + "\n";
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) + '\0' + header;
    for (float x : t.to_vector()) {
      double d = x;
      bytes.append(reinterpret_cast<const char*>(&d), 8);
    }
    save_bytes(name, bytes);
  };
  write_f64("q64.npy", q);
  std::string kl = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
  kl += std::string(64 - (10 + kl.size() + 1) % 64, ' ') + "\n";
  std::string kl_bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(kl.size()) + '\0' + kl;
  for (int64_t x : {int64_t{3}, int64_t{5}}) kl_bytes.append(reinterpret_cast<const char*>(&x), 8);
  save_bytes("kl64.npy", kl_bytes);

  RunResult r = run({"attend", "--threads", "1", "--backend", "reference", "--verbose", "--q", path("q64.npy"),
                     "--k", path("k.npy"), "--v", path("v.npy"), "--key-lengths", path("kl64.npy"), "--out",
                     path("o.npy")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "note: " + path("q64.npy") + ": converted float64 to float32")) << r.err;
  EXPECT_TRUE(contains(r.err, "note: " + path("kl64.npy") + ": converted int64 to int32")) << r.err;
  AttentionExtras ex;
  ex.key_lengths = Tensor::from_vector_i32({3, 5}, {2});
  AttentionOptions opts;
  opts.backend = AttentionBackend::reference;
  expect_file_equals(path("o.npy"), attention_forward(q, k, v, ex, opts).out);
}

TEST_F(AttendCli, GenerateIsSeededAndChecksAgainstTheReference) {
  RunResult r = run({"attend", "--generate", "1,4,2,9,11,8", "--seed", "5", "--causal", "--out", path("a.npy")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "q [1, 4, 9, 8], k [1, 2, 11, 8], v [1, 2, 11, 8] -> out [1, 4, 9, 8]")) << r.out;
  EXPECT_TRUE(contains(r.out, "score scaled_dot")) << r.out;
  EXPECT_TRUE(contains(r.out, " ms")) << r.out;
  ASSERT_EQ(run({"attend", "--generate", "1,4,2,9,11,8", "--seed", "5", "--causal", "--out", path("b.npy")}).status, 0);
  ASSERT_EQ(run({"attend", "--generate", "1,4,2,9,11,8", "--seed", "6", "--causal", "--out", path("c.npy")}).status, 0);
  Tensor a = io::read_npy(path("a.npy")), b = io::read_npy(path("b.npy")), c = io::read_npy(path("c.npy"));
  ASSERT_EQ(a.shape(), (Shape{1, 4, 9, 8}));
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());

  for (const char* score : {"scaled_dot", "general", "additive", "cosine"}) {
    r = run({"attend", "--generate", "2,4,2,16,16,8", "--score", score, "--check"});
    EXPECT_EQ(r.status, 0) << score << ": " << r.err;
    EXPECT_TRUE(contains(r.out, "check vs reference: max |diff| out ")) << r.out;
    EXPECT_TRUE(contains(r.out, ": ok")) << r.out;
  }
  // The README's first command, smaller.
  r = run({"attend", "--generate", "1,8,8,64,64,64", "--check", "--quiet"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

// A failed --check exits 1 with one line and writes nothing. The fused kernel accumulates in
// f32 in another order than the double reference, so with tolerance 0 some element differs.
TEST_F(AttendCli, FailedCheckExitsOneAndWritesNothing) {
  RunResult r = run({"attend", "--generate", "1,2,2,64,64,32", "--backend", "fused", "--check", "--tolerance", "0",
                     "--out", path("o.npy")});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(contains(r.err, "attn attend: check failed: max |out - reference| = ")) << r.err;
  EXPECT_TRUE(files().empty()) << files().front();
  // The same run with the default tolerance passes and writes its output.
  r = run({"attend", "--generate", "1,2,2,64,64,32", "--backend", "fused", "--check", "--out", path("o.npy")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(path("o.npy")));
}

// ---- bad input: exit 2, one line on stderr naming the problem, no output file ----

struct BadCase {
  std::string name;
  std::vector<std::string> args;  // after "attend"; "@/" stands for the temp dir
  bool with_inputs;               // prepend --q/--k/--v and every forward output flag
  std::string expect;             // part of the one stderr line
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class AttendRejects : public AttendCli, public ::testing::WithParamInterface<BadCase> {};

TEST_P(AttendRejects, WithOneLineExitTwoAndNoOutputFile) {
  const BadCase& c = GetParam();
  input("q.npy", {1, 2, 3, 4});
  input("k.npy", {1, 2, 5, 4});
  input("v.npy", {1, 2, 5, 4});
  input("k_bad.npy", {1, 2, 5, 3});   // head dim differs from q
  input("do_bad.npy", {1, 2, 3, 7});  // dout of the wrong shape
  input("kl_float.npy", {1});
  const std::string q_bytes = io::read_file(path("q.npy"));
  save_bytes("trunc.npy", q_bytes.substr(0, q_bytes.size() - 4));
  const std::vector<std::string> before = files();

  std::vector<std::string> args = {"attend"};
  if (c.with_inputs)  // every forward output, so that any file left behind would show
    args.insert(args.end(), {"--q", "@/q.npy", "--k", "@/k.npy", "--v", "@/v.npy", "--out", "@/o.npy", "--lse",
                             "@/l.npy", "--weights", "@/w.npy"});
  args.insert(args.end(), c.args.begin(), c.args.end());
  std::string cmd;
  for (auto& a : args) {
    if (a.rfind("@/", 0) == 0) a = dir_ + a.substr(1);
    cmd += a + " ";
  }
  SCOPED_TRACE(cmd);
  RunResult r = run(args);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("attn attend: error: ", 0), 0u) << r.err;
  EXPECT_TRUE(contains(r.err, c.expect)) << "expected '" << c.expect << "' in: " << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(files(), before) << "an output file was left behind";
}

const BadCase kBadCases[] = {
    // Flag combinations.
    {"no_input", {}, false, "no input: give --q, --k and --v"},
    {"k_missing", {"--q", "@/q.npy", "--v", "@/v.npy", "--out", "@/o.npy"}, false, "--k is missing"},
    {"generate_and_files", {"--generate", "1,2,2,3,5,4"}, true, "--generate makes q, k and v"},
    {"generate_five_sizes", {"--generate", "1,2,2,3,5", "--out", "@/o.npy"}, false, "--generate 1,2,2,3,5: expected 6"},
    {"generate_not_integer", {"--generate", "1,2,x,3,5,4", "--out", "@/o.npy"}, false, "'x' is not an integer"},
    {"generate_zero", {"--generate", "1,2,2,0,5,4", "--out", "@/o.npy"}, false, "every size must be >= 1"},
    {"dq_without_grad_out", {"--dq", "@/dq.npy"}, true, "--dq needs --grad-out"},
    {"grad_out_alone", {"--grad-out", "@/do_bad.npy"}, true, "--grad-out without a gradient output"},
    {"query_offset_alone", {"--query-offset", "2"}, true, "--query-offset applies only with --causal or --window"},
    {"wq_without_additive", {"--wq", "@/q.npy"}, true, "--wq applies only to --score additive"},
    {"w_without_general", {"--w", "@/q.npy"}, true, "--w applies only to --score general"},
    {"general_without_w", {"--score", "general"}, true, "--score general needs --w"},
    {"additive_without_wk", {"--score", "additive", "--wq", "@/q.npy"}, true, "--wk is missing"},
    {"scale_with_cosine", {"--scale", "2", "--score", "cosine"}, true, "--scale applies only to --score scaled_dot"},
    {"temperature_without_cosine", {"--temperature", "2"}, true, "--temperature applies only to --score cosine"},
    {"seed_alone", {"--seed", "3"}, true, "--seed applies only with --dropout or --generate"},
    {"tolerance_without_check", {"--tolerance", "1"}, true, "--tolerance applies only with --check"},
    {"dbias_without_bias", {"--dbias", "@/db.npy", "--grad-out", "@/do_bad.npy"}, true, "--dbias needs --bias"},
    {"dw_without_general", {"--dw", "@/dw.npy", "--grad-out", "@/do_bad.npy"}, true,
     "--dw applies only to --score general"},
    {"unknown_score", {"--score", "bogus"}, true, "bogus"},
    {"unknown_backend", {"--backend", "gpu"}, true, "--backend gpu: unknown backend"},
    {"window_one_number", {"--window", "3"}, true, "--window 3: expected 2"},
    {"window_negative", {"--window", "-1,2"}, true, "L and R must be >= 0"},
    {"dropout_not_a_number", {"--dropout", "abc"}, true, "--dropout"},
    {"unknown_flag", {"--no-such-flag"}, true, "--no-such-flag"},
    {"output_twice", {"--dq", "@/o.npy", "--grad-out", "@/do_bad.npy"}, true, "the same file is given for two outputs"},
    {"output_overwrites_input", {"--dq", "@/q.npy", "--grad-out", "@/do_bad.npy"}, true,
     "would overwrite an input file"},
    // File problems name the file.
    {"missing_file", {"--q", "@/nope.npy", "--k", "@/k.npy", "--v", "@/v.npy", "--out", "@/o.npy"}, false, "nope.npy"},
    {"truncated_file", {"--q", "@/trunc.npy", "--k", "@/k.npy", "--v", "@/v.npy", "--out", "@/o.npy"}, false,
     "trunc.npy: truncated"},
    {"key_lengths_float", {"--key-lengths", "@/kl_float.npy"}, true, "kl_float.npy: holds float32"},
    // Library errors: shapes, dropout range, and a backward failing after the forward ran.
    {"k_head_dim", {"--q", "@/q.npy", "--k", "@/k_bad.npy", "--v", "@/v.npy", "--out", "@/o.npy"}, false,
     "[1, 2, 5, 3]"},
    {"dropout_out_of_range", {"--dropout", "1.5"}, true, "dropout"},
    {"backward_fails_after_forward", {"--grad-out", "@/do_bad.npy", "--dq", "@/dq.npy"}, true, "[1, 2, 3, 7]"},
    // The second output cannot be written: the first must not appear either.
    {"second_output_unwritable",
     {"--q", "@/q.npy", "--k", "@/k.npy", "--v", "@/v.npy", "--out", "@/o.npy", "--lse", "@/no_dir/l.npy"}, false,
     "no_dir/l.npy"},
};

INSTANTIATE_TEST_SUITE_P(Cases, AttendRejects, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST_F(AttendCli, HelpListsEveryFlagAndVersionWorks) {
  RunResult r = run({"attend", "--help"});
  ASSERT_EQ(r.status, 0);
  for (const char* flag :
       {"--q", "--k", "--v", "--generate", "--score", "--scale", "--temperature", "--w", "--wq", "--wk", "--va",
        "--causal", "--query-offset", "--window", "--key-lengths", "--bias", "--dropout", "--seed", "--backend",
        "--check-finite", "--check", "--tolerance", "--quiet", "--out", "--lse", "--weights", "--grad-out", "--dq",
        "--dk", "--dv", "--dw", "--dwq", "--dwk", "--dva", "--dbias", "--dtemperature"})
    EXPECT_TRUE(contains(r.out, std::string(flag) + " ")) << flag << " missing from --help";
  // Shapes are documented.
  EXPECT_TRUE(contains(r.out, "q [B, Hq, Nq, D]")) << r.out;
  EXPECT_TRUE(contains(r.out, "[B|1, Hq|1, Nq, Nk]")) << r.out;

  r = run({"--version"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("attn ", 0), 0u) << r.out;
  EXPECT_TRUE(contains(r.out, "SIMD target")) << r.out;

  r = run({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(contains(r.out, "attend")) << r.out;
}

}  // namespace
}  // namespace attn
