// `attn train g2p`, `attn eval g2p`, `attn predict` end to end on a tiny synthetic CMUdict
// written into a temp dir: a tiny RNN is trained, then scored and used from its checkpoint
// directory alone. Checks the files, that eval's WER / PER are what predict's outputs give
// against the references, the token count, exact resume, the heatmap read back, and bad
// input refused with exit status 2 and one line.
#include <gtest/gtest.h>
#include <png.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "attn/data/cmudict.h"
#include "attn/data/metrics.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/transformer_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/io/atomic_file.h"
#include "attn/io/checkpoint.h"
#include "attn/io/heatmap.h"
#include "attn/io/safetensors.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/models/transformer_seq2seq.h"

namespace attn {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int status = -1;
  std::string out, err;
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// Letter -> phoneme of the synthetic language: a word's pronunciation is its letters' phonemes.
const std::map<char, std::string> kPhone = {{'a', "AA"}, {'b', "B"}, {'d', "D"}, {'e', "EH"},
                                            {'f', "F"},  {'g', "G"}, {'k', "K"}, {'s', "S"}};

std::string pronounce(const std::string& w) {
  std::string p;
  for (char c : w) p += (p.empty() ? "" : " ") + kPhone.at(c);
  return p;
}

// 60 distinct words of 2..5 letters (a fixed LCG), the first with a second pronunciation, plus
// two lines the reader skips (punctuation in the word, a non-ASCII byte).
std::string synthetic_dict() {
  const std::string letters = "abdefgks";
  std::vector<std::string> words;
  uint64_t x = 12345;
  auto next = [&] {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(x >> 33);
  };
  while (words.size() < 60) {
    std::string w;
    const size_t n = 2 + next() % 4;
    for (size_t i = 0; i < n; ++i) w += letters[next() % letters.size()];
    if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(w);
  }
  std::string t;
  for (const auto& w : words) {
    std::string upper = w;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    t += upper + "\t" + pronounce(w) + "\n";
    if (w == words[0]) t += upper + "(1)\tEH " + pronounce(w) + "\n";
  }
  t += "A!B\tAA B\n";
  t += "CAF\xc3\xa9\tK AA F EY\n";
  return t;
}

class G2PCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/attn_g2p_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    std::ofstream(path("dict.tsv")) << synthetic_dict();
  }
  static void TearDownTestSuite() {
    if (!std::getenv("ATTN_KEEP_TMP")) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  static std::string path(const std::string& name) { return *dir_ + "/" + name; }

  // Runs `attn <args>` (each argument single-quoted), capturing stdout and stderr.
  static RunResult run(const std::vector<std::string>& args) {
    std::string cmd = std::string("OMP_WAIT_POLICY=PASSIVE '") + ATTN_CLI_PATH + "' --threads 1";
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " >'" + *dir_ + "/.stdout' 2>'" + *dir_ + "/.stderr'";
    RunResult r;
    const int raw = std::system(cmd.c_str());
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = io::read_file(*dir_ + "/.stdout");
    r.err = io::read_file(*dir_ + "/.stderr");
    fs::remove(*dir_ + "/.stdout");
    fs::remove(*dir_ + "/.stderr");
    return r;
  }

  // The tiny RNN of these tests: 8 test words, 8 dev words, the rest (44) for training.
  static std::vector<std::string> train_args(const std::string& out, int64_t steps) {
    return {"train",     "g2p",        "--data",      path("dict.tsv"), "--model",     "rnn",  "--out",
            path(out),   "--test-words", "8",        "--dev-words",    "8",           "--batch", "8",
            "--embed-dim", "16",       "--hidden-dim", "32",            "--decoder-dim", "64", "--attn-dim",
            "32",        "--dropout",  "0",           "--lr",           "1e-2",        "--warmup", "20",
            "--max-steps", std::to_string(steps), "--eval-every", "25", "--patience", "0", "--progress", "0"};
  }

  // Trains `out` once per suite (shared by the tests that only read it).
  static const RunResult& trained(const std::string& out, int64_t steps) {
    static std::map<std::string, RunResult> runs;
    auto it = runs.find(out);
    if (it == runs.end()) it = runs.emplace(out, run(train_args(out, steps))).first;
    return it->second;
  }

  static nlohmann::json read_json(const std::string& file) { return nlohmann::json::parse(io::read_file(file)); }

  // word -> predicted phonemes, from predict's "word  PH PH" lines.
  static std::map<std::string, std::string> parse_predictions(const std::string& out) {
    std::map<std::string, std::string> m;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      const size_t sp = line.find("  ");
      if (sp == std::string::npos) {
        m[line.substr(0, line.find(' '))] = "";
        continue;
      }
      m[line.substr(0, sp)] = line.substr(sp + 2);
    }
    return m;
  }

  static std::string* dir_;
};

std::string* G2PCli::dir_ = nullptr;

constexpr int64_t kShortSteps = 30;   // undertrained: some words wrong
constexpr int64_t kLongSteps = 300;   // enough to learn the letter -> phoneme rule

TEST_F(G2PCli, TrainWritesCheckpointsMetricsAndCountsTokensLikeThePeer) {
  const RunResult& r = trained("short", kShortSteps);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(path("short/best.safetensors")));
  EXPECT_TRUE(fs::exists(path("short/last.safetensors")));
  // Counts printed at the start: the reader skipped the punctuation and non-ASCII lines.
  EXPECT_TRUE(contains(r.out, "60 words, 61 pronunciations")) << r.out;
  EXPECT_TRUE(contains(r.out, "1 non-ASCII, 1 by pattern")) << r.out;
  EXPECT_TRUE(contains(r.out, "parameters: ")) << r.out;

  const nlohmann::json j = read_json(path("short/metrics.json"));
  // The split and the training pairs, recomputed here with the data layer.
  const data::Cmudict dict = data::Cmudict::read(path("dict.tsv"));
  const data::CmudictSplit split = data::split_words(dict, 8, 8);
  int64_t pairs = 0, tokens_per_epoch = 0;
  for (const auto& w : split.train) {
    for (const auto& p : dict.entry(w).pronunciations) {
      ++pairs;
      tokens_per_epoch += static_cast<int64_t>(w.size() + p.size() + 1);  // characters + phonemes + end mark
    }
  }
  EXPECT_EQ(j.at("train_words").get<int64_t>(), static_cast<int64_t>(split.train.size()));
  EXPECT_EQ(j.at("train_pairs").get<int64_t>(), pairs);
  EXPECT_EQ(j.at("dev_words").get<int64_t>(), 8);
  EXPECT_EQ(j.at("steps").get<int64_t>(), kShortSteps);
  EXPECT_EQ(j.at("stop_reason").get<std::string>(), "max_steps");
  EXPECT_GT(j.at("parameters").get<int64_t>(), 0);
  // The OpenMP wait policy the run obeyed (run() sets PASSIVE; GOMP_SPINCOUNT, when the
  // environment has it, overrides that in libgomp and so in the label), in the file and the log.
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  const std::string wait = spin ? std::string("GOMP_SPINCOUNT=") + spin : "OMP_WAIT_POLICY=PASSIVE";
  EXPECT_EQ(j.at("omp_wait").get<std::string>(), wait);
  EXPECT_TRUE(contains(r.out, "(OpenMP wait: " + wait + ")")) << r.out;
  // Whole epochs of (characters + phonemes + end marks): the peer's token count.
  const int64_t steps_per_epoch = (pairs + 7) / 8;
  const int64_t epochs = kShortSteps / steps_per_epoch;
  const int64_t rest = kShortSteps % steps_per_epoch;
  EXPECT_EQ(j.at("epochs").get<int64_t>(), epochs);
  if (rest == 0) {
    EXPECT_EQ(j.at("tokens").get<int64_t>(), epochs * tokens_per_epoch);
  }
  EXPECT_GE(j.at("tokens").get<int64_t>(), epochs * tokens_per_epoch);
  EXPECT_LT(j.at("tokens").get<int64_t>(), (epochs + 1) * tokens_per_epoch);
  EXPECT_GT(j.at("tokens_per_second").get<double>(), 0);
  EXPECT_LE(j.at("train_seconds").get<double>(), j.at("seconds").get<double>());
  // Evaluations at steps 25 and 30 (the end).
  ASSERT_EQ(j.at("history").size(), 2u);
  EXPECT_EQ(j["history"][0].at("step").get<int64_t>(), 25);
  EXPECT_EQ(j["history"][1].at("step").get<int64_t>(), 30);

  // The metadata rebuilds everything: vocabularies, model config, data split.
  const nlohmann::json meta = io::read_checkpoint_metadata(path("short/best.safetensors"));
  ASSERT_TRUE(meta.contains("g2p")) << meta.dump();
  EXPECT_EQ(meta["g2p"].at("kind").get<std::string>(), "rnn");
  EXPECT_EQ(meta["g2p"]["data"].at("test_words").get<int64_t>(), 8);
  EXPECT_EQ(fs::path(meta["g2p"]["data"].at("path").get<std::string>()), fs::absolute(path("dict.tsv")));
  EXPECT_EQ(data::Vocabulary::from_json(meta["g2p"].at("chars").dump()), dict.char_vocabulary());
  EXPECT_EQ(data::Vocabulary::from_json(meta["g2p"].at("phonemes").dump()), dict.phoneme_vocabulary());
}

// eval's WER and PER equal the scores of predict's outputs against the references, computed
// here from the words and phoneme strings.
TEST_F(G2PCli, EvalScoresWhatPredictPredicts) {
  ASSERT_EQ(trained("short", kShortSteps).status, 0);
  for (const std::string split : {"test", "dev"}) {
    SCOPED_TRACE(split);
    RunResult e = run({"eval", "g2p", "--checkpoint", path("short"), "--split", split, "--json", path("eval.json")});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_EQ(count_lines(e.out), 1) << e.out;
    const nlohmann::json j = read_json(path("eval.json"));
    EXPECT_EQ(j.at("split").get<std::string>(), split);
    EXPECT_EQ(j.at("words").get<int64_t>(), 8);
    EXPECT_EQ(j.at("decoder").get<std::string>(), "greedy");
    EXPECT_EQ(j.at("step").get<int64_t>(), std::stoll(io::read_safetensors_metadata(path("short/best.safetensors")).at("step")));
    const double wer = j.at("wer").get<double>(), per = j.at("per").get<double>();
    EXPECT_GE(wer, 0.0);
    EXPECT_LE(wer, 1.0);
    EXPECT_GE(per, 0.0);
    EXPECT_GT(j.at("words_per_second").get<double>(), 0.0);

    const data::Cmudict dict = data::Cmudict::read(path("dict.tsv"));
    const data::CmudictSplit s = data::split_words(dict, 8, 8);
    const std::vector<std::string>& words = split == "test" ? s.test : s.dev;
    std::vector<std::string> args = {"predict", "--checkpoint", path("short")};
    args.insert(args.end(), words.begin(), words.end());
    RunResult p = run(args);
    ASSERT_EQ(p.status, 0) << p.err;
    const auto pred = parse_predictions(p.out);
    ASSERT_EQ(pred.size(), words.size()) << p.out;
    int64_t wrong = 0, dist = 0, ref_len = 0;
    for (const auto& w : words) {
      ASSERT_TRUE(pred.count(w)) << w << " missing in " << p.out;
      std::istringstream in(pred.at(w));
      std::vector<std::string> hyp;
      for (std::string ph; in >> ph;) hyp.push_back(ph);
      bool any_equal = false;
      int64_t best = -1, best_len = 0;
      for (const auto& ref : dict.entry(w).pronunciations) {
        any_equal = any_equal || hyp == ref;
        const int64_t d = data::edit_distance(hyp, ref);
        if (best < 0 || d < best) {
          best = d;
          best_len = static_cast<int64_t>(ref.size());
        }
      }
      wrong += any_equal ? 0 : 1;
      dist += best;
      ref_len += best_len;
    }
    EXPECT_EQ(j.at("wrong_words").get<int64_t>(), wrong);
    EXPECT_EQ(j.at("phoneme_errors").get<int64_t>(), dist);
    EXPECT_EQ(j.at("reference_phonemes").get<int64_t>(), ref_len);
    EXPECT_DOUBLE_EQ(wer, static_cast<double>(wrong) / 8.0);
    EXPECT_DOUBLE_EQ(per, static_cast<double>(dist) / static_cast<double>(ref_len));
  }
  // --subset scores the first N words; beam 1 is greedy.
  RunResult e = run({"eval", "g2p", "--checkpoint", path("short/best.safetensors"), "--subset", "3", "--beam", "3",
                     "--json", path("eval3.json")});
  ASSERT_EQ(e.status, 0) << e.err;
  const nlohmann::json j = read_json(path("eval3.json"));
  EXPECT_EQ(j.at("words").get<int64_t>(), 3);
  EXPECT_EQ(j.at("decoder").get<std::string>(), "beam");
  EXPECT_EQ(j.at("beam").get<int64_t>(), 3);
}

// Trained long enough, the model has learnt the training words and pronounces them exactly.
TEST_F(G2PCli, LearnsTheTrainingWordsAndPredictsThemExactly) {
  const RunResult& r = trained("long", kLongSteps);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const data::Cmudict dict = data::Cmudict::read(path("dict.tsv"));
  const data::CmudictSplit s = data::split_words(dict, 8, 8);
  std::vector<std::string> words;
  for (const auto& w : s.train)
    if (dict.entry(w).pronunciations.size() == 1 && words.size() < 6) words.push_back(w);
  std::vector<std::string> args = {"predict", "--checkpoint", path("long")};
  for (const auto& w : words) {
    std::string upper = w;  // predict lowercases its words, as CMUdict's are
    upper[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[0])));
    args.push_back(upper);
  }
  RunResult p = run(args);
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_EQ(count_lines(p.out), static_cast<int>(words.size()));
  const auto pred = parse_predictions(p.out);
  for (const auto& w : words) EXPECT_EQ(pred.count(w) ? pred.at(w) : "<missing>", pronounce(w)) << w;
}

// A run stopped at step 10 and resumed to step 20 ends with the same parameters and optimizer
// state, bit for bit, as a run of 20 steps.
TEST_F(G2PCli, ResumeContinuesFromTheSavedStep) {
  RunResult a = run(train_args("straight", 20));
  ASSERT_EQ(a.status, 0) << a.err;
  RunResult b1 = run(train_args("resumed", 10));
  ASSERT_EQ(b1.status, 0) << b1.err;
  std::vector<std::string> args = train_args("resumed", 20);
  args.push_back("--resume");
  RunResult b2 = run(args);
  ASSERT_EQ(b2.status, 0) << b2.err;
  EXPECT_TRUE(contains(b2.err, "resumed from")) << b2.err;
  EXPECT_TRUE(contains(b2.err, "at step 10")) << b2.err;
  const nlohmann::json j = read_json(path("resumed/metrics.json"));
  EXPECT_TRUE(j.at("resumed").get<bool>());
  EXPECT_EQ(j.at("steps").get<int64_t>(), 20);
  const io::Safetensors x = io::read_safetensors(path("straight/last.safetensors"));
  const io::Safetensors y = io::read_safetensors(path("resumed/last.safetensors"));
  ASSERT_EQ(x.tensors.size(), y.tensors.size());
  for (const auto& [name, t] : x.tensors) {
    ASSERT_TRUE(y.contains(name)) << name;
    const Tensor& u = y.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(t.to_vector(), u.to_vector()) << name;
  }
}

// `--resume` alone continues the run it resumes: the schedule, learning rate, warm-up, step
// count, batch and the rest of the recipe come from the checkpoint. A cosine run cut by
// --epochs and resumed without its options ends bit for bit where the uninterrupted run does
// (with the default inverse-sqrt schedule instead, or without --max-steps, it could not).
TEST_F(G2PCli, ResumeAloneKeepsTheCheckpointsRecipe) {
  std::vector<std::string> args = train_args("recipe_straight", 40);
  args.insert(args.end(), {"--schedule", "cosine"});
  RunResult a = run(args);
  ASSERT_EQ(a.status, 0) << a.err;

  args = train_args("recipe_resumed", 40);
  args.insert(args.end(), {"--schedule", "cosine", "--epochs", "2"});
  RunResult b1 = run(args);
  ASSERT_EQ(b1.status, 0) << b1.err;
  const nlohmann::json first = read_json(path("recipe_resumed/metrics.json"));
  ASSERT_EQ(first.at("stop_reason").get<std::string>(), "max_epochs") << first.dump();
  ASSERT_LT(first.at("steps").get<int64_t>(), 40);

  RunResult b2 = run({"train", "g2p", "--data", path("dict.tsv"), "--out", path("recipe_resumed"), "--resume",
                      "--progress", "0"});
  ASSERT_EQ(b2.status, 0) << b2.out << b2.err;
  EXPECT_TRUE(contains(b2.out, "recipe: batch 8, lr 0.01, warm-up 20 then cosine")) << b2.out;
  const nlohmann::json j = read_json(path("recipe_resumed/metrics.json"));
  EXPECT_EQ(j.at("steps").get<int64_t>(), 40);
  EXPECT_EQ(j.at("stop_reason").get<std::string>(), "max_steps");
  const io::Safetensors x = io::read_safetensors(path("recipe_straight/last.safetensors"));
  const io::Safetensors y = io::read_safetensors(path("recipe_resumed/last.safetensors"));
  ASSERT_EQ(x.tensors.size(), y.tensors.size());
  for (const auto& [name, t] : x.tensors) {
    ASSERT_TRUE(y.contains(name)) << name;
    EXPECT_EQ(t.to_vector(), y.at(name).to_vector()) << name;
  }

  // An option given again overrides the checkpoint's, and says so.
  RunResult c = run({"train", "g2p", "--data", path("dict.tsv"), "--out", path("recipe_resumed"), "--resume",
                     "--max-steps", "42", "--lr", "0.005", "--progress", "0"});
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  EXPECT_TRUE(contains(c.out, "--lr 0.005 given: the checkpoint's run used 0.01")) << c.out;
  EXPECT_TRUE(contains(c.out, "--max-steps 42 given: the checkpoint's run used 40")) << c.out;
  EXPECT_FALSE(contains(c.out, "--schedule")) << c.out;
  EXPECT_EQ(read_json(path("recipe_resumed/metrics.json")).at("steps").get<int64_t>(), 42);
}

// A checkpoint whose stored recipe has a value of the wrong type is refused in one line that
// names the file, before any training.
TEST_F(G2PCli, ResumeRefusesAMalformedRecipe) {
  std::vector<std::string> args = train_args("recipe_bad", 10);
  RunResult a = run(args);
  ASSERT_EQ(a.status, 0) << a.err;
  const std::string last = path("recipe_bad/last.safetensors");
  io::Safetensors st = io::read_safetensors(last);
  nlohmann::json meta = nlohmann::json::parse(st.metadata.at("meta"));
  ASSERT_TRUE(meta.contains("recipe")) << meta.dump();
  meta["recipe"]["--lr"] = "fast";
  st.metadata["meta"] = meta.dump();
  io::write_safetensors(last, io::TensorList(st.tensors.begin(), st.tensors.end()), st.metadata);
  args = train_args("recipe_bad", 20);
  args.push_back("--resume");
  RunResult r = run(args);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(contains(r.err, "recipe_bad/last.safetensors' has a malformed training recipe")) << r.err;
  EXPECT_EQ(read_json(path("recipe_bad/metrics.json")).at("steps").get<int64_t>(), 10);
}

// --train-minutes caps the time spent in training steps (the peer's budget).
TEST_F(G2PCli, TrainMinutesStopsOnTrainingTime) {
  std::vector<std::string> args = train_args("timed", 1000000);
  args.insert(args.end(), {"--train-minutes", "0.0005"});
  *(std::find(args.begin(), args.end(), "--eval-every") + 1) = "1000000";
  RunResult r = run(args);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = read_json(path("timed/metrics.json"));
  EXPECT_EQ(j.at("stop_reason").get<std::string>(), "time");
  EXPECT_GE(j.at("train_seconds").get<double>(), 0.03);
  EXPECT_LT(j.at("steps").get<int64_t>(), 1000000);
}

// --model cnn: the convolutional encoder is in the checkpoint's config, and eval / predict
// rebuild it from there.
// --schedule cosine: after the linear warm-up, half a cosine from --lr down to 0 at --max-steps;
// each evaluation records the learning rate of the step just taken (0-based s = step - 1).
TEST_F(G2PCli, CosineScheduleDecaysToZeroAtMaxSteps) {
  std::vector<std::string> args = train_args("cosine", 60);
  const auto every = std::find(args.begin(), args.end(), "--eval-every");
  ASSERT_NE(every, args.end());
  every[1] = "20";  // evaluations (and recorded lr) at steps 20, 40, 60
  args.insert(args.end(), {"--schedule", "cosine"});
  RunResult r = run(args);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const nlohmann::json hist = read_json(path("cosine/metrics.json")).at("history");
  ASSERT_EQ(hist.size(), 3u) << hist.dump();
  const double peak = 1e-2, warmup = 20, total = 60;
  for (const auto& h : hist) {
    const double s = h.at("step").get<double>() - 1;
    const double expected = s < warmup ? peak * (s + 1) / warmup
                                       : peak * (1 + std::cos(std::numbers::pi * (s - warmup) / (total - warmup))) / 2;
    EXPECT_NEAR(h.at("lr").get<double>(), expected, 1e-12) << "step " << s + 1;
  }
  EXPECT_LT(hist.back().at("lr").get<double>(), 2e-5);  // 0.0015 of the peak one step before the end

  // It needs the step count it decays to.
  args = train_args("cosine_no_steps", 0);
  args.insert(args.end(), {"--schedule", "cosine"});
  r = run(args);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--schedule cosine")) << r.err;
  EXPECT_TRUE(contains(r.err, "--max-steps")) << r.err;
  EXPECT_FALSE(fs::exists(path("cosine_no_steps")));
}

TEST_F(G2PCli, CnnEncoderTrainsAndIsRebuiltFromItsCheckpoint) {
  std::vector<std::string> args = train_args("cnn", 20);
  args[5] = "cnn";
  args.insert(args.end(), {"--conv-layers", "2", "--conv-kernel", "3"});
  RunResult r = run(args);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "2 conv layers of width 3")) << r.out;
  const nlohmann::json meta = io::read_checkpoint_metadata(path("cnn/best.safetensors"));
  EXPECT_EQ(meta["g2p"].at("kind").get<std::string>(), "cnn");
  EXPECT_EQ(meta["g2p"]["model"].at("encoder").get<std::string>(), "cnn");
  EXPECT_EQ(meta["g2p"]["model"].at("conv_layers").get<int64_t>(), 2);
  RunResult e = run({"eval", "g2p", "--checkpoint", path("cnn"), "--json", path("cnn_eval.json")});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(read_json(path("cnn_eval.json")).at("model").get<std::string>(), "cnn");
  RunResult p = run({"predict", "--checkpoint", path("cnn"), "abd", "--heatmap", path("cnn.svg")});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_EQ(count_lines(p.out), 1);
  EXPECT_TRUE(fs::exists(path("cnn.svg")));
}

// Ctrl-C during training saves last.safetensors and exits with status 130; --resume goes on
// from the step it saved.
TEST_F(G2PCli, InterruptSavesTheLastCheckpointAndExits130) {
  std::vector<std::string> args = train_args("interrupted", 1000000);
  args.push_back("--log-every");
  args.push_back("1");
  const std::string err_file = path("interrupted.err");
  fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<std::string> full = {ATTN_CLI_PATH, "--threads", "1"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen(err_file.c_str(), "w", stderr)) ::_exit(99);
    ::execv(ATTN_CLI_PATH, argv.data());
    ::_exit(98);
  }
  // A step log line means the training loop (and its signal handlers) is running.
  for (int i = 0; i < 6000 && !contains(fs::exists(err_file) ? io::read_file(err_file) : "", "step "); ++i)
    ::usleep(10000);
  ASSERT_TRUE(contains(io::read_file(err_file), "step ")) << io::read_file(err_file);
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 130) << io::read_file(err_file);
  const std::string last = path("interrupted/last.safetensors");
  ASSERT_TRUE(fs::exists(last));
  const int64_t saved = std::stoll(io::read_safetensors_metadata(last).at("step"));
  EXPECT_GE(saved, 1);

  args = train_args("interrupted", saved + 3);
  args.push_back("--resume");
  RunResult r = run(args);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "at step " + std::to_string(saved))) << r.err;
  EXPECT_EQ(read_json(path("interrupted/metrics.json")).at("steps").get<int64_t>(), saved + 3);
}

struct Png {
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;
  io::Rgb at(int x, int y) const {
    const uint8_t* p = &rgb[(static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * 3];
    return io::Rgb{p[0], p[1], p[2]};
  }
};

Png read_png(const std::string& file) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&image, file.c_str())) << image.message;
  image.format = PNG_FORMAT_RGB;
  Png out;
  out.w = static_cast<int>(image.width);
  out.h = static_cast<int>(image.height);
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) << image.message;
  return out;
}

double luminance(io::Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

// The heatmap has phonemes down, letters across, and in every row its brightest cell where the
// model's attention weight (recomputed here through the library) is largest.
TEST_F(G2PCli, HeatmapShowsTheAlignment) {
  ASSERT_EQ(trained("long", kLongSteps).status, 0);
  const std::string word = "gadsbe";
  RunResult p = run({"predict", "--checkpoint", path("long"), word, "--heatmap", path("map.png")});
  ASSERT_EQ(p.status, 0) << p.err;
  ASSERT_TRUE(fs::exists(path("map.png")));

  // The same model and greedy decoding, through the library.
  const std::string ckpt = path("long/best.safetensors");
  const nlohmann::json meta = io::read_checkpoint_metadata(ckpt);
  Rng rng(0);
  models::Seq2SeqRNN model(models::Seq2SeqRNNConfig::from_json(meta["g2p"]["model"]), rng);
  NamedParams params = model.named_parameters();
  io::load_checkpoint(ckpt, params, nullptr, nullptr, nullptr);
  const data::Vocabulary chars = data::Vocabulary::from_json(meta["g2p"]["chars"].dump());
  const data::Vocabulary phonemes = data::Vocabulary::from_json(meta["g2p"]["phonemes"].dump());
  std::vector<int32_t> src = chars.encode_chars(word);
  Tensor src_t = Tensor::zeros({1, static_cast<int64_t>(src.size())}, DType::i32);
  std::copy(src.begin(), src.end(), src_t.data<int32_t>());
  Tensor len_t = Tensor::zeros({1}, DType::i32);
  len_t.data<int32_t>()[0] = static_cast<int32_t>(src.size());
  decode::RnnStepDecoder dec(model);
  decode::SearchOptions so;
  so.max_length = static_cast<int64_t>(src.size()) + 8;
  const decode::Hypothesis h = decode::greedy_search(dec, src_t, len_t, so).at(0);
  std::vector<std::string> rows, cols;
  for (int32_t t : h.tokens) rows.push_back(phonemes.symbol(t));
  if (h.finished) rows.push_back("<eos>");
  for (char c : word) cols.push_back(std::string(1, c));
  const Tensor a = h.alignment.contiguous();
  ASSERT_EQ(a.shape(), (Shape{static_cast<int64_t>(rows.size()), static_cast<int64_t>(cols.size())}));
  // predict printed the same pronunciation.
  std::string printed;
  for (size_t i = 0; i < h.tokens.size(); ++i) printed += (i ? " " : "") + rows[i];
  EXPECT_EQ(p.out, word + "  " + printed + "\n");

  const std::vector<float> w = a.to_vector();
  io::HeatmapOptions o;
  o.title = word + ": bahdanau attention";
  o.row_title = "phonemes";
  o.col_title = "letters";
  o.vmax = *std::max_element(w.begin(), w.end());
  const io::HeatmapGeometry g = io::heatmap_geometry(0, a.size(0), a.size(1), rows, cols, o);
  const Png img = read_png(path("map.png"));
  ASSERT_EQ(img.w, g.width);
  ASSERT_EQ(img.h, g.height);
  const int64_t n_cols = a.size(1);
  for (int64_t i = 0; i < a.size(0); ++i) {
    const auto row = w.begin() + i * n_cols;
    const int64_t jmax = std::max_element(row, row + n_cols) - row;
    auto lum = [&](int64_t j) {
      return luminance(img.at(g.grid_x[0] + static_cast<int>(j) * g.cell + g.cell / 2,
                              g.grid_y[0] + static_cast<int>(i) * g.cell + g.cell / 2));
    };
    for (int64_t j = 0; j < n_cols; ++j) EXPECT_LE(lum(j), lum(jmax)) << "row " << rows[static_cast<size_t>(i)] << " col " << j;
  }

  // Several words: one file per word, FILE's stem + _word.
  p = run({"predict", "--checkpoint", path("long"), "ab", "fed", "--heatmap", path("maps.svg")});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(fs::exists(path("maps_ab.svg")));
  EXPECT_TRUE(fs::exists(path("maps_fed.svg")));
  EXPECT_FALSE(fs::exists(path("maps.svg")));
}

// The Transformer path: trained, scored, and its heatmap a grid of the chosen decoder layer's
// heads plus their mean, each panel's rows brightest where that head's weight is largest
// (the weights recomputed here through the library).
TEST_F(G2PCli, TransformerTrainsEvaluatesAndDrawsItsHeads) {
  RunResult t = run({"train", "g2p", "--data", path("dict.tsv"), "--model", "transformer", "--out", path("tf"),
                     "--test-words", "8", "--dev-words", "8", "--batch", "8", "--d-model", "16", "--heads", "2",
                     "--encoder-layers", "1", "--decoder-layers", "2", "--ffn", "32", "--dropout", "0", "--lr", "3e-3",
                     "--warmup", "20", "--max-steps", "60", "--eval-every", "30", "--progress", "0"});
  ASSERT_EQ(t.status, 0) << t.out << t.err;
  EXPECT_TRUE(contains(t.out, "transformer (pre-norm, d_model 16, 1+2 layers, 2 heads")) << t.out;
  RunResult e = run({"eval", "g2p", "--checkpoint", path("tf"), "--json", path("tf_eval.json")});
  ASSERT_EQ(e.status, 0) << e.err;
  const nlohmann::json j = read_json(path("tf_eval.json"));
  EXPECT_EQ(j.at("model").get<std::string>(), "transformer");
  EXPECT_EQ(j.at("words").get<int64_t>(), 8);

  const std::string word = "gadsbe";
  RunResult p = run({"predict", "--checkpoint", path("tf"), word, "--heatmap", path("heads.png"), "--layer", "0"});
  ASSERT_EQ(p.status, 0) << p.err;

  const std::string ckpt = path("tf/best.safetensors");
  const nlohmann::json meta = io::read_checkpoint_metadata(ckpt);
  Rng rng(0);
  models::TransformerSeq2Seq model(models::TransformerSeq2SeqOptions::from_json(meta["g2p"]["model"]), rng);
  NamedParams params = model.named_parameters();
  io::load_checkpoint(ckpt, params, nullptr, nullptr, nullptr);
  const data::Vocabulary chars = data::Vocabulary::from_json(meta["g2p"]["chars"].dump());
  const data::Vocabulary phonemes = data::Vocabulary::from_json(meta["g2p"]["phonemes"].dump());
  const std::vector<int32_t> src = chars.encode_chars(word);
  const int64_t S = static_cast<int64_t>(src.size());
  Tensor src_t = Tensor::zeros({1, S}, DType::i32);
  std::copy(src.begin(), src.end(), src_t.data<int32_t>());
  Tensor len_t = Tensor::zeros({1}, DType::i32);
  len_t.data<int32_t>()[0] = static_cast<int32_t>(S);
  decode::TransformerStepDecoder dec(model);
  decode::SearchOptions so;
  so.max_length = S + 8;
  const decode::Hypothesis h = decode::greedy_search(dec, src_t, len_t, so).at(0);
  std::vector<std::string> rows, cols;
  for (int32_t tok : h.tokens) rows.push_back(phonemes.symbol(tok));
  if (h.finished) rows.push_back("<eos>");
  for (char c : word) cols.push_back(std::string(1, c));
  std::string printed;
  for (size_t i = 0; i < h.tokens.size(); ++i) printed += (i ? " " : "") + rows[i];
  EXPECT_EQ(p.out, word + "  " + printed + "\n");
  const int64_t R = static_cast<int64_t>(rows.size());
  Tensor tgt_in = Tensor::zeros({1, R}, DType::i32);
  tgt_in.data<int32_t>()[0] = data::Vocabulary::kBos;
  for (int64_t i = 1; i < R; ++i) tgt_in.data<int32_t>()[i] = h.tokens[static_cast<size_t>(i - 1)];
  const Tensor w = model.cross_attention_weights(src_t, tgt_in).at(0).contiguous();  // layer 0
  ASSERT_EQ(w.shape(), (Shape{1, 2, R, S}));
  const std::vector<float> v = w.to_vector();
  // Panels: head 0, head 1, mean.
  std::vector<std::vector<float>> panels(3, std::vector<float>(static_cast<size_t>(R * S)));
  for (int64_t k = 0; k < R * S; ++k) {
    panels[0][static_cast<size_t>(k)] = v[static_cast<size_t>(k)];
    panels[1][static_cast<size_t>(k)] = v[static_cast<size_t>(R * S + k)];
    panels[2][static_cast<size_t>(k)] = 0.5f * (panels[0][static_cast<size_t>(k)] + panels[1][static_cast<size_t>(k)]);
  }
  io::HeatmapOptions o;
  o.title = word + ": cross-attention, decoder layer 0";
  o.row_title = "phonemes";
  o.col_title = "letters";
  o.vmax = std::max(*std::max_element(panels[0].begin(), panels[0].end()),
                    *std::max_element(panels[1].begin(), panels[1].end()));
  const io::HeatmapGeometry g = io::heatmap_geometry(2, R, S, rows, cols, o);
  const Png img = read_png(path("heads.png"));
  ASSERT_EQ(img.w, g.width);
  ASSERT_EQ(img.h, g.height);
  ASSERT_EQ(g.grid_x.size(), 3u);
  for (size_t pnl = 0; pnl < 3; ++pnl) {
    for (int64_t i = 0; i < R; ++i) {
      const auto row = panels[pnl].begin() + i * S;
      const int64_t jmax = std::max_element(row, row + S) - row;
      auto lum = [&](int64_t j) {
        return luminance(img.at(g.grid_x[pnl] + static_cast<int>(j) * g.cell + g.cell / 2,
                                g.grid_y[pnl] + static_cast<int>(i) * g.cell + g.cell / 2));
      };
      for (int64_t jj = 0; jj < S; ++jj) EXPECT_LE(lum(jj), lum(jmax)) << "panel " << pnl << " row " << i << " col " << jj;
    }
  }
  RunResult bad = run({"predict", "--checkpoint", path("tf"), word, "--heatmap", path("bad.png"), "--layer", "2"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_TRUE(contains(bad.err, "--layer 2")) << bad.err;
  EXPECT_TRUE(bad.out.empty()) << bad.out;
  EXPECT_FALSE(fs::exists(path("bad.png")));
}

// Bad input: exit status 2, exactly one line on stderr naming the problem, no output files.
TEST_F(G2PCli, BadInputIsOneLineAndExitTwo) {
  ASSERT_EQ(trained("short", kShortSteps).status, 0);
  auto expect_error = [&](const std::vector<std::string>& args, const std::vector<std::string>& parts) {
    RunResult r = run(args);
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    for (const auto& part : parts) EXPECT_TRUE(contains(r.err, part)) << "'" << part << "' not in: " << r.err;
  };
  SCOPED_TRACE("predict");
  expect_error({"predict", "--checkpoint", path("nowhere"), "abc"}, {"nowhere", "not found"});
  fs::create_directories(path("empty_dir"));
  expect_error({"predict", "--checkpoint", path("empty_dir"), "abc"}, {"no checkpoint", "empty_dir"});
  expect_error({"predict", "--checkpoint", path("short"), "ab1d"}, {"'ab1d'", "'1'"});
  expect_error({"predict", "--checkpoint", path("short"), "abd", "ka\xc3\xa9"}, {"0xc3"});
  expect_error({"predict", "--checkpoint", path("short"), ""}, {"empty word"});
  expect_error({"predict", "--checkpoint", path("short"), "abd", "--heatmap", path("x.jpg")}, {".png or .svg"});
  EXPECT_FALSE(fs::exists(path("x.jpg")));
  // A truncated checkpoint (a crash mid-copy, a full disk) is refused, not half-read.
  const std::string bytes = io::read_file(path("short/best.safetensors"));
  std::ofstream(path("truncated.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_error({"predict", "--checkpoint", path("truncated.safetensors"), "abd"}, {"truncated.safetensors"});
  expect_error({"eval", "g2p", "--checkpoint", path("truncated.safetensors")}, {"truncated.safetensors"});
  // A checkpoint that is not a G2P one.
  std::ofstream(path("junk.safetensors"), std::ios::binary) << "not a checkpoint at all";
  expect_error({"eval", "g2p", "--checkpoint", path("junk.safetensors")}, {"junk.safetensors"});
  expect_error({"eval", "g2p", "--checkpoint", path("short"), "--data", path("missing.tsv")}, {"missing.tsv", "not found"});
  expect_error({"eval", "g2p", "--checkpoint", path("short"), "--split", "train"}, {"--split"});

  SCOPED_TRACE("train");
  std::vector<std::string> args = train_args("never", 5);
  args[3] = path("missing.tsv");
  expect_error(args, {"missing.tsv", "not found"});
  EXPECT_FALSE(fs::exists(path("never")));
  args = train_args("never", 5);
  args[5] = "lstm";
  expect_error(args, {"--model"});
  args = train_args("never", 5);
  args[9] = "100";  // --test-words: more than the file has
  expect_error(args, {"60 words", "--test-words"});
  EXPECT_FALSE(fs::exists(path("never")));
}

}  // namespace
}  // namespace attn
