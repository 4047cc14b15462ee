// Faults through the real training loop (train::train_seq2seq on a tiny Seq2SeqRNN with two
// encoder layers and dropout, at 2 threads): SIGTERM at a random moment then --resume, a
// SIGKILL at a random moment while it saves a checkpoint at every step, and a kill at a
// fixed byte of a checkpoint write. Every run is a child process: this test binary
// re-executed with TrainerFaultChild.Run selected (a fresh process, because OpenMP's
// thread pool does not survive fork()). The parent compares the final parameters, optimizer
// moments and step with an uninterrupted run, bit for bit.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"
#include "common/toy_tasks.h"

extern char** environ;

namespace attn {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSteps = 30;
constexpr int kExitFinished = 0, kExitSignal = 3, kExitError = 4;

// The reversal task (tests/common/toy_tasks.h): 96 examples / batch 16 = 6 batches per
// epoch, so 30 steps cross several epochs and stop mid-epoch.
using testing::eval_set;
using testing::greedy_fn;
using testing::reversal_data;
using testing::toy_config;

const char* env(const char* name) { return std::getenv(name); }

// The child: trains in ATTN_TRAINER_CHILD_DIR (resuming when ATTN_TRAINER_CHILD_RESUME=1),
// evaluating and saving every ATTN_TRAINER_CHILD_EVAL_EVERY steps; writes one byte to the
// file descriptor ATTN_TRAINER_CHILD_READY_FD at the first evaluation (inside the loop, its
// signal handlers in place). Exit code: kExitFinished, kExitSignal or kExitError.
TEST(TrainerFaultChild, Run) {
  const char* dir = env("ATTN_TRAINER_CHILD_DIR");
  if (dir == nullptr) GTEST_SKIP() << "run by TrainerFaults.* as a child process";
  int code = kExitError;
  try {
    set_num_threads(2);
    const auto train = reversal_data(96, 7);
    const train::EvalSet dev = eval_set(reversal_data(8, 8));
    const models::Seq2SeqRNNConfig c = toy_config(/*dropout=*/0.2, /*encoder_layers=*/2);
    Rng init(9, 0);
    models::Seq2SeqRNN model(c, init);
    int ready_fd = env("ATTN_TRAINER_CHILD_READY_FD") ? std::atoi(env("ATTN_TRAINER_CHILD_READY_FD")) : -1;
    const train::DecodeFn greedy = greedy_fn(model);
    train::DecodeFn decode = [&](const std::vector<std::vector<int32_t>>& srcs) {
      if (ready_fd >= 0) {  // the first evaluation: tell the parent the run is under way
        const char byte = 1;
        (void)!::write(ready_fd, &byte, 1);
        ::close(ready_fd);
        ready_fd = -1;
      }
      return greedy(srcs);
    };
    train::TrainOptions o;
    o.quiet = true;
    o.handle_signals = true;
    o.batch_size = 16;
    o.lr = 1e-2;
    o.warmup_steps = 20;
    o.max_steps = kSteps;
    o.eval_every = std::atoi(env("ATTN_TRAINER_CHILD_EVAL_EVERY"));
    o.checkpoint_dir = dir;
    o.resume = std::string(env("ATTN_TRAINER_CHILD_RESUME")) == "1";
    // A SIGTERM after train_seq2seq returns must not turn a finished run into a killed one.
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);  // a parent that does not wait for the ready byte closed the pipe
    train::TrainResult r = train::train_seq2seq(model, train, dev, decode, o);
    code = r.stop_reason == "signal" ? kExitSignal : r.steps == kSteps ? kExitFinished : kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trainer child: %s\n", e.what());
  }
  std::fflush(nullptr);
  std::_Exit(code);
}

struct Child {
  pid_t pid = -1;
  int ready_fd = -1;  // read end: one byte once training is under way
};

// Starts this test binary as a trainer child. `fsize`: RLIMIT_FSIZE in bytes (0 = none).
Child spawn(const fs::path& dir, bool resume, int eval_every, rlim_t fsize = 0) {
  int ready[2];
  EXPECT_EQ(::pipe(ready), 0);
  // Everything the child needs is built before fork(): between fork and exec only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string(*e).rfind("ATTN_TRAINER_CHILD_", 0) != 0) env_strings.emplace_back(*e);
  env_strings.push_back("ATTN_TRAINER_CHILD_DIR=" + dir.string());
  env_strings.push_back(std::string("ATTN_TRAINER_CHILD_RESUME=") + (resume ? "1" : "0"));
  env_strings.push_back("ATTN_TRAINER_CHILD_EVAL_EVERY=" + std::to_string(eval_every));
  env_strings.push_back("ATTN_TRAINER_CHILD_READY_FD=" + std::to_string(ready[1]));
  env_strings.push_back("OMP_WAIT_POLICY=PASSIVE");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=TrainerFaultChild.Run";
  std::vector<char*> argv = {exe.data(), filter.data(), nullptr};
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    rlimit core{0, 0};
    ::setrlimit(RLIMIT_CORE, &core);
    if (fsize > 0) {
      rlimit fs_limit{fsize, fsize};
      ::setrlimit(RLIMIT_FSIZE, &fs_limit);
    }
    // Quiet child: its gtest banner would interleave with the parent's output.
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(ready[1]);
  return {pid, ready[0]};
}

bool wait_ready(Child& c) {
  char byte = 0;
  const bool ok = ::read(c.ready_fd, &byte, 1) == 1;
  ::close(c.ready_fd);
  c.ready_fd = -1;
  return ok;
}

int wait_status(const Child& c) {
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  return status;
}

// Runs a child to its end; returns its exit code (or -signal).
int run(const fs::path& dir, bool resume, int eval_every, rlim_t fsize = 0) {
  Child c = spawn(dir, resume, eval_every, fsize);
  ::close(c.ready_fd);
  const int status = wait_status(c);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Every tensor of the final checkpoint (parameters, Adam's moments and step counts), and
// the step: bit for bit.
void expect_same_checkpoint(const fs::path& a, const fs::path& b) {
  io::Safetensors x = io::read_safetensors(a.string()), y = io::read_safetensors(b.string());
  ASSERT_EQ(x.tensors.size(), y.tensors.size());
  ASSERT_GT(x.tensors.size(), 20u);
  for (const auto& [name, t] : x.tensors) {
    ASSERT_TRUE(y.contains(name)) << name;
    const Tensor& u = y.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    ASSERT_EQ(t.dtype(), u.dtype()) << name;
    // Bits, not ==: -0 vs +0 or a NaN payload would count as a difference.
    const std::vector<float> tv = t.to_vector(), uv = u.to_vector();
    EXPECT_EQ(0, std::memcmp(tv.data(), uv.data(), tv.size() * sizeof(float))) << name;
  }
  for (const char* key : {"step", "epoch", "rng_seed", "rng_counter", "optimizer"}) EXPECT_EQ(x.meta(key), y.meta(key)) << key;
  EXPECT_EQ(io::read_checkpoint_metadata(a.string()).at("train").at("batch_in_epoch"),
            io::read_checkpoint_metadata(b.string()).at("train").at("batch_in_epoch"));
}

// The step of a checkpoint, read after validating the whole file (as --resume does).
int64_t checkpoint_step(const fs::path& p) { return std::stoll(io::read_safetensors(p.string()).meta("step")); }

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("attn_trainer_fault_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

class TrainerFaults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new fs::path(temp_dir("reference"));
    reference_status_ = run(*reference_, false, 5);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*reference_);
    delete reference_;
  }
  void SetUp() override {
    ASSERT_EQ(reference_status_, kExitFinished) << "the uninterrupted run failed";
    ASSERT_TRUE(fs::exists(*reference_ / "last.safetensors"));
  }
  static fs::path* reference_;
  static int reference_status_;
};
fs::path* TrainerFaults::reference_ = nullptr;
int TrainerFaults::reference_status_ = -1;

// SIGTERM at a random moment after the first evaluation: the loop finishes its step, saves
// last.safetensors and exits; resuming reaches the uninterrupted run's checkpoint exactly.
TEST_F(TrainerFaults, SigtermThenResumeMatchesAnUninterruptedRun) {
  Rng rng(21, 0);
  int interrupted = 0;
  for (int trial = 0; trial < 3; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const fs::path dir = temp_dir("sigterm");
    Child c = spawn(dir, false, 5);
    ASSERT_TRUE(wait_ready(c));
    ::usleep(static_cast<useconds_t>(rng.uniform() * 20000));
    ::kill(c.pid, SIGTERM);
    const int status = wait_status(c);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    const int code = WEXITSTATUS(status);
    ASSERT_TRUE(code == kExitSignal || code == kExitFinished) << "exit " << code;
    if (code == kExitSignal) {
      ++interrupted;
      const int64_t at = checkpoint_step(dir / "last.safetensors");
      EXPECT_GE(at, 5);
      EXPECT_LT(at, kSteps);
      SCOPED_TRACE("stopped at step " + std::to_string(at));
      ASSERT_EQ(run(dir, true, 5), kExitFinished);
    }
    expect_same_checkpoint(*reference_ / "last.safetensors", dir / "last.safetensors");
    fs::remove_all(dir);
  }
  EXPECT_GE(interrupted, 1) << "no trial was interrupted mid-training";
}

// SIGKILL at a random moment while the loop saves last.safetensors after every step: the
// file at that name is always a complete checkpoint (or absent before the first save), and
// resuming from it still reaches the uninterrupted result.
TEST_F(TrainerFaults, SigkillDuringCheckpointWritesLeavesALoadableCheckpoint) {
  Rng rng(22, 0);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const fs::path dir = temp_dir("sigkill");
    Child c = spawn(dir, false, 1);
    ASSERT_TRUE(wait_ready(c));
    ::usleep(static_cast<useconds_t>(rng.uniform() * 30000));
    ::kill(c.pid, SIGKILL);
    const int status = wait_status(c);
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), kExitFinished);
    } else {
      EXPECT_EQ(WTERMSIG(status), SIGKILL);
    }
    if (fs::exists(dir / "last.safetensors")) {
      const int64_t at = checkpoint_step(dir / "last.safetensors");  // throws if torn
      EXPECT_GE(at, 1);
      EXPECT_LE(at, kSteps);
    }
    ASSERT_EQ(run(dir, true, 1), kExitFinished);
    expect_same_checkpoint(*reference_ / "last.safetensors", dir / "last.safetensors");
    fs::remove_all(dir);
  }
}

// A kill at a known byte of a checkpoint write (RLIMIT_FSIZE k: SIGXFSZ once a file would
// pass k bytes). A run stopped by SIGTERM at its first evaluation leaves last.safetensors
// (step 5 or 6); resumed under the limit, its next save is killed part-way: last.safetensors
// stays byte-identical to the previous one; best.safetensors is the old file or, when it was
// smaller than k, a complete newer one.
TEST_F(TrainerFaults, KillMidWriteKeepsThePreviousCheckpointByteForByte) {
  const fs::path dir = temp_dir("midwrite");
  const fs::path seed = temp_dir("midwrite_seed");
  Child c = spawn(seed, false, 5);
  ASSERT_TRUE(wait_ready(c));
  ::kill(c.pid, SIGTERM);
  const int status = wait_status(c);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), kExitSignal);
  const std::string last = read_bytes(seed / "last.safetensors");
  const std::string best = read_bytes(seed / "best.safetensors");
  ASSERT_GT(last.size(), 1000u);
  for (double frac : {0.0, 0.01, 0.5, 0.99}) {
    SCOPED_TRACE("killed after " + std::to_string(frac) + " of the file");
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(seed / "last.safetensors", dir / "last.safetensors");
    fs::copy_file(seed / "best.safetensors", dir / "best.safetensors");
    const rlim_t k = static_cast<rlim_t>(frac * static_cast<double>(last.size())) + 1;
    EXPECT_EQ(run(dir, true, 5, k), -SIGXFSZ);
    EXPECT_EQ(read_bytes(dir / "last.safetensors"), last);
    if (read_bytes(dir / "best.safetensors") != best) {
      EXPECT_GT(checkpoint_step(dir / "best.safetensors"), 6);
    }
    // Only the leftover temporary file may differ; it never takes the real name, and the
    // run resumes from the intact checkpoint to the uninterrupted result.
    ASSERT_EQ(run(dir, true, 5), kExitFinished);
    expect_same_checkpoint(*reference_ / "last.safetensors", dir / "last.safetensors");
  }
  fs::remove_all(dir);
  fs::remove_all(seed);
}

}  // namespace
}  // namespace attn
