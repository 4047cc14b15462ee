// Faults while writing: a checkpoint writer SIGKILLed at every byte offset and at random
// moments, a full disk (RLIMIT_FSIZE), `attn attend` output on a full disk, and a training
// loop interrupted by SIGTERM and resumed. Each fault runs in a forked child; the parent
// checks that the previous checkpoint survives intact and that no partial file loads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "attn/core/rng.h"
#include "attn/core/tensor.h"
#include "attn/io/atomic_file.h"
#include "attn/io/checkpoint.h"
#include "attn/io/npy.h"
#include "attn/optim/adam.h"

namespace attn {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("attn_fault_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small model whose every value is `version` (so a loaded file shows which save it was).
struct Model {
  NamedParams params;
  explicit Model(float version) {
    params = {{"enc.weight", Tensor::full({16, 24}, version), Tensor::full({16, 24}, 0.01f)},
              {"enc.bias", Tensor::full({24}, version), Tensor::full({24}, 0.02f)},
              {"out.weight", Tensor::full({24, 8}, version), Tensor::full({24, 8}, 0.03f)}};
  }
};

void save_version(const std::string& path, float version) {
  Model m(version);
  io::TrainState st;
  st.step = static_cast<int64_t>(version);
  io::save_checkpoint(path, m.params, nullptr, st, {{"version", version}});
}

// Loads `path` and returns the version every tensor and the metadata agree on; -1 when the
// file does not load; fails the test when it loads but is inconsistent (a torn file).
float loaded_version(const std::string& path) {
  Model m(0.f);
  io::TrainState st;
  nlohmann::json meta;
  try {
    io::load_checkpoint(path, m.params, nullptr, &st, &meta);
  } catch (const Error&) {
    return -1.f;
  }
  const float v = meta.at("version").get<float>();
  EXPECT_EQ(st.step, static_cast<int64_t>(v));
  for (const NamedParam& p : m.params)
    for (float x : p.value.to_vector()) EXPECT_EQ(x, v) << p.name;
  return v;
}

// Runs `child` in a forked process with the file-size limit `fsize` (RLIM_INFINITY: none)
// and SIGXFSZ left at its default (kill) or ignored; returns the wait status.
template <typename F>
int run_child(F child, rlim_t fsize, bool ignore_xfsz, int kill_after_us = -1) {
  fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    rlimit core{0, 0};
    ::setrlimit(RLIMIT_CORE, &core);
    if (ignore_xfsz) ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{fsize, RLIM_INFINITY};  // soft limit only: the child may lift it to report
    ::setrlimit(RLIMIT_FSIZE, &lim);
    int code = 0;
    try {
      code = child();
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  if (kill_after_us >= 0) {
    ::usleep(static_cast<useconds_t>(kill_after_us));
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

size_t file_size(const fs::path& p) { return static_cast<size_t>(fs::file_size(p)); }

// Every leftover temporary must be either a complete, consistent checkpoint or fail to load —
// and it never has the real name.
void check_leftovers(const fs::path& dir, const std::string& real) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n == real) continue;
    ASSERT_NE(n.find(".tmp."), std::string::npos) << "unexpected file " << n;
    loaded_version(e.path().string());  // asserts consistency when it loads
    fs::remove(e.path());
  }
}

// The writer killed (SIGXFSZ, the default action of exceeding RLIMIT_FSIZE) after exactly
// `offset` bytes, for offsets spread over the whole file: the old checkpoint is intact.
TEST(Faults, CheckpointWriterKilledAtEveryOffsetKeepsThePreviousFile) {
  const fs::path dir = temp_dir("offsets");
  const std::string path = (dir / "model.ckpt").string();
  save_version(path, 1.f);
  const size_t size = file_size(path);
  ASSERT_GT(size, 1000u);
  std::vector<size_t> offsets = {0, 1, 7, 8, 9, 100, size / 2, size - 8, size - 1};
  for (size_t o = 0; o < size; o += size / 23) offsets.push_back(o);
  for (size_t offset : offsets) {
    SCOPED_TRACE("killed after " + std::to_string(offset) + " of " + std::to_string(size) + " bytes");
    const int status = run_child([&] { save_version(path, 2.f); return 0; }, offset, false);
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
    EXPECT_EQ(loaded_version(path), 1.f);
    check_leftovers(dir, "model.ckpt");
  }
  // With room for the whole file the same child succeeds and the new version is in place.
  EXPECT_EQ(run_child([&] { save_version(path, 2.f); return 0; }, size + 1, false), 0);
  EXPECT_EQ(loaded_version(path), 2.f);
  fs::remove_all(dir);
}

// SIGKILL at random moments while a child saves versions 2, 3, 4, ... in a loop: the file at
// the real name always loads, consistently, as version 1 or some completed later version.
TEST(Faults, CheckpointWriterSigkilledAtRandomMomentsNeverTearsTheFile) {
  const fs::path dir = temp_dir("sigkill");
  const std::string path = (dir / "model.ckpt").string();
  save_version(path, 1.f);
  Rng rng(2024);
  float last = 1.f;
  for (int trial = 0; trial < 25; ++trial) {
    const int delay = static_cast<int>(rng.uniform() * 3000);  // µs; a save takes ~100 µs - 1 ms
    SCOPED_TRACE("trial " + std::to_string(trial) + ", SIGKILL after " + std::to_string(delay) + " us");
    const int status = run_child(
        [&] {
          for (int v = 2;; ++v) save_version(path, static_cast<float>(v));
          return 0;
        },
        RLIM_INFINITY, false, delay);
    ASSERT_TRUE(WIFSIGNALED(status));
    const float v = loaded_version(path);
    ASSERT_GE(v, 1.f) << "the checkpoint no longer loads";
    last = v;
    check_leftovers(dir, "model.ckpt");
    save_version(path, 1.f);
  }
  (void)last;
  fs::remove_all(dir);
}

// Disk full: the write fails with EFBIG (SIGXFSZ ignored) → save_checkpoint throws an
// attn::Error naming the path, the previous checkpoint is untouched and no temp file remains.
TEST(Faults, CheckpointOnAFullDiskThrowsAndKeepsThePreviousFile) {
  const fs::path dir = temp_dir("full");
  const std::string path = (dir / "model.ckpt").string();
  save_version(path, 1.f);
  const std::string msg_path = (dir / "message").string();
  for (rlim_t limit : {rlim_t{0}, rlim_t{64}, rlim_t{file_size(path) - 1}}) {
    SCOPED_TRACE("file size limit " + std::to_string(limit));
    const int status = run_child(
        [&] {
          try {
            save_version(path, 2.f);
          } catch (const Error& e) {
            rlimit none{RLIM_INFINITY, RLIM_INFINITY};
            ::setrlimit(RLIMIT_FSIZE, &none);
            io::write_file_atomic(msg_path, std::string(e.what()));
            return 0;
          }
          return 1;  // no error: wrong
        },
        limit, true);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0) << "save_checkpoint did not throw attn::Error";
    const std::string msg = io::read_file(msg_path);
    EXPECT_NE(msg.find("save_checkpoint"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
    EXPECT_EQ(loaded_version(path), 1.f);
    fs::remove(msg_path);
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename(), "model.ckpt") << "temp file left behind";
  }
  fs::remove_all(dir);
}

// `attn attend` on a full disk: a one-line error, a non-zero exit, the earlier outputs intact.
TEST(Faults, AttendOnAFullDiskFailsCleanlyAndKeepsEarlierOutputs) {
  const fs::path dir = temp_dir("attend");
  const std::string out = (dir / "out.npy").string(), lse = (dir / "lse.npy").string();
  const std::string cmd = std::string(ATTN_CLI_PATH) + " attend --generate 1,2,2,64,64,32 --out " + out +
                          " --lse " + lse;
  ASSERT_EQ(std::system((cmd + " > /dev/null 2>&1").c_str()), 0);
  const std::string out0 = io::read_file(out), lse0 = io::read_file(lse);
  const std::string err = (dir / "stderr").string();
  // (the limit also applies to the stderr file: keep it above one message line)
  for (rlim_t limit : {rlim_t{400}, rlim_t{out0.size() - 1}}) {
    SCOPED_TRACE("file size limit " + std::to_string(limit));
    const int status = run_child(
        [&] {
          // exec so that the limit and the ignored SIGXFSZ apply to the CLI itself
          const std::string c = cmd + " --seed 7 2> " + err;
          ::execl("/bin/sh", "sh", "-c", c.c_str(), static_cast<char*>(nullptr));
          return 4;
        },
        limit, true);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 0);
    const std::string e = io::read_file(err);
    EXPECT_NE(e.find("cannot write"), std::string::npos) << e;
    EXPECT_NE(e.find("File too large"), std::string::npos) << e;
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    EXPECT_EQ(io::read_file(out), out0);
    EXPECT_EQ(io::read_file(lse), lse0);
    fs::remove(err);
    for (const auto& f : fs::directory_iterator(dir)) EXPECT_EQ(f.path().string().find(".tmp."), std::string::npos);
  }
  fs::remove_all(dir);
}

// ---- an interrupted training loop resumes to the same result --------------------------------

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

// A tiny regression trained with Adam on noisy data drawn from a counter-based RNG; the RNG
// state, step and optimizer state all go through the checkpoint. With `stop_on_signal`, a
// SIGTERM / SIGINT makes it save at the end of the current step and return early.
struct Trainer {
  NamedParams params{{"w", Tensor::zeros({8}), Tensor::zeros({8})}, {"b", Tensor::zeros({1}), Tensor::zeros({1})}};
  optim::Adam adam{params, {.lr = 0.05}};
  io::TrainState state;
  std::string ckpt;

  explicit Trainer(std::string path) : ckpt(std::move(path)) { state.rng = Rng(99); }

  void step() {
    // loss = mean_i (w·x_i + b - y_i)^2 on a fresh batch of 16, y = sum(x) / 2 + 1 + noise
    std::vector<float> dw(8, 0.f);
    float db = 0.f;
    const float* w = params[0].value.data<float>();
    const float b = params[1].value.data<float>()[0];
    for (int i = 0; i < 16; ++i) {
      float x[8], y = 1.f;
      for (float& xi : x) xi = static_cast<float>(state.rng.normal()), y += xi / 2;
      y += 0.1f * static_cast<float>(state.rng.normal());
      float r = b - y;
      for (int d = 0; d < 8; ++d) r += w[d] * x[d];
      for (int d = 0; d < 8; ++d) dw[d] += 2 * r * x[d] / 16;
      db += 2 * r / 16;
    }
    params[0].grad.copy_from(Tensor::from_vector(dw, {8}));
    params[1].grad.data<float>()[0] = db;
    adam.step();
    ++state.step;
  }
  void save() { io::save_checkpoint(ckpt, params, &adam, state, {{"task", "regression"}}); }
  void resume() { io::load_checkpoint(ckpt, params, &adam, &state, nullptr); }
  // Trains until `steps`; returns false when stopped by a signal (after saving).
  bool train(int64_t steps, bool stop_on_signal) {
    while (state.step < steps) {
      step();
      if (state.step % 300 == 0) save();
      if (stop_on_signal && g_stop) {
        save();
        return false;
      }
    }
    save();
    return true;
  }
};

TEST(Faults, InterruptedTrainingResumesToTheSameResult) {
  const fs::path dir = temp_dir("resume");
  const int64_t kSteps = 1200;
  Trainer whole((dir / "whole.ckpt").string());
  ASSERT_TRUE(whole.train(kSteps, false));
  const std::vector<float> w_ref = whole.params[0].value.to_vector();
  ASSERT_LT(std::fabs(w_ref[0] - 0.5f), 0.05f);  // it did learn

  Rng rng(7);
  for (int trial = 0; trial < 3; ++trial) {
    for (int sig : {SIGTERM, SIGINT}) {
      SCOPED_TRACE("trial " + std::to_string(trial) + " signal " + std::to_string(sig));
      const std::string path = (dir / "run.ckpt").string();
      fs::remove(path);
      fflush(nullptr);
      int ready[2];
      ASSERT_EQ(::pipe(ready), 0);
      const pid_t pid = ::fork();
      if (pid == 0) {
        g_stop = 0;
        ::signal(SIGTERM, on_stop);
        ::signal(SIGINT, on_stop);
        // Tell the parent the handlers are in place (a signal before that would kill us).
        const char c = 1;
        (void)!::write(ready[1], &c, 1);
        Trainer t(path);
        const bool finished = t.train(kSteps, true);
        ::_exit(finished ? 10 : 0);
      }
      char c = 0;
      ASSERT_EQ(::read(ready[0], &c, 1), 1);
      ::close(ready[0]);
      ::close(ready[1]);
      ::usleep(static_cast<useconds_t>(rng.uniform() * 2000));
      ::kill(pid, sig);
      int status = 0;
      ::waitpid(pid, &status, 0);
      ASSERT_TRUE(WIFEXITED(status)) << "the trainer did not exit cleanly: status " << status;
      SCOPED_TRACE("exit " + std::to_string(WEXITSTATUS(status)));
      ASSERT_TRUE(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 10);

      Trainer resumed(path);
      if (fs::exists(path)) resumed.resume();  // killed before the first save: start over
      const int64_t at = resumed.state.step;
      ASSERT_TRUE(resumed.train(kSteps, false));
      EXPECT_EQ(resumed.state.step, kSteps);
      EXPECT_EQ(resumed.params[0].value.to_vector(), w_ref) << "resumed at step " << at;
      EXPECT_EQ(resumed.params[1].value.to_vector(), whole.params[1].value.to_vector());
      EXPECT_EQ(resumed.state.rng.counter(), whole.state.rng.counter());
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attn
