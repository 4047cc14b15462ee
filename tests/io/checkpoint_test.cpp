#include "attn/io/checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "attn/io/atomic_file.h"
#include "attn/io/safetensors.h"
#include "attn/optim/adam.h"
#include "attn/optim/sgd.h"

namespace attn::io {
namespace {

using nlohmann::json;

std::string temp_path(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("attn_ckpt_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return (d / name).string();
}

::testing::AssertionResult has(const std::string& msg, const std::string& sub) {
  if (msg.find(sub) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << sub << "' not found in: '" << msg << "'";
}

Tensor random_tensor(const Shape& s, Rng& rng) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal());
  return t;
}

// A small "model": names as a PyTorch state_dict would have them.
NamedParams make_params(uint64_t seed, int64_t hidden = 4) {
  Rng rng(seed);
  return {{"embed.weight", random_tensor({10, hidden}, rng), Tensor()},
          {"out.weight", random_tensor({3, hidden}, rng), Tensor()},
          {"out.bias", random_tensor({3}, rng), Tensor()}};
}

void set_grads(NamedParams& ps, uint64_t seed) {
  Rng rng(seed);
  for (NamedParam& p : ps) p.grad = random_tensor(p.value.shape(), rng);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.numel() * dtype_size(a.dtype())) == 0;
}

std::vector<Tensor> snapshot(const NamedParams& ps) {
  std::vector<Tensor> out;
  for (const NamedParam& p : ps) out.push_back(p.value.clone());
  return out;
}

std::string load_error(const std::string& path, NamedParams& ps, optim::Optimizer* opt, TrainState* st, json* meta) {
  try {
    load_checkpoint(path, ps, opt, st, meta);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const json kMeta = {{"model", {{"type", "classifier"}, {"hidden", 4}}}, {"vocab", {"<pad>", "a", "b", "caf\xc3\xa9"}}};

TEST(Checkpoint, RoundTripIsBitExactAndResumesIdentically) {
  const std::string path = temp_path("rt.safetensors");
  NamedParams a = make_params(1);
  optim::AdamW opt_a(a, optim::AdamOptions{1e-2, 0.9, 0.99, 1e-8, 0.1});
  for (int s = 0; s < 3; ++s) {
    set_grads(a, 100 + s);
    opt_a.step(a);
  }
  TrainState ts;
  ts.step = 3;
  ts.epoch = 1;
  ts.rng = Rng(0xfeedfacecafebeefULL, 12345678901234ULL);  // beyond 2^53: must survive exactly
  save_checkpoint(path, a, &opt_a, ts, kMeta);

  // The file is plain safetensors: params under their own names, optimizer state prefixed.
  Safetensors st = read_safetensors(path);
  EXPECT_TRUE(st.contains("embed.weight"));
  EXPECT_TRUE(st.contains("optim.exp_avg.embed.weight"));
  EXPECT_TRUE(st.contains("optim.exp_avg_sq.out.bias"));
  EXPECT_EQ(st.tensors.size(), 9u);

  EXPECT_EQ(read_checkpoint_metadata(path), kMeta);

  NamedParams b = make_params(2);  // different values, same shapes
  optim::AdamW opt_b(b, optim::AdamOptions{1e-2, 0.9, 0.99, 1e-8, 0.1});
  TrainState ts_b;
  json meta_b;
  load_checkpoint(path, b, &opt_b, &ts_b, &meta_b);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].value, b[i].value)) << a[i].name;
  EXPECT_EQ(ts_b.step, 3);
  EXPECT_EQ(ts_b.epoch, 1);
  EXPECT_EQ(ts_b.rng.seed(), ts.rng.seed());
  EXPECT_EQ(ts_b.rng.counter(), ts.rng.counter());
  EXPECT_EQ(meta_b, kMeta);
  EXPECT_EQ(opt_b.step_count(), 3);
  const auto sa = opt_a.state_dict(), sb = opt_b.state_dict();
  ASSERT_EQ(sa.tensors.size(), sb.tensors.size());
  for (size_t i = 0; i < sa.tensors.size(); ++i)
    EXPECT_TRUE(same_bits(sa.tensors[i].second, sb.tensors[i].second)) << sa.tensors[i].first;

  // The next steps are identical.
  for (int s = 0; s < 2; ++s) {
    set_grads(a, 200 + s);
    set_grads(b, 200 + s);
    opt_a.step(a);
    opt_b.step(b);
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].value, b[i].value)) << a[i].name;
}

// The model built from metadata alone (as the CLI does before loading).
TEST(Checkpoint, ParamsOnlyAndMetadataOnly) {
  const std::string path = temp_path("params_only.safetensors");
  NamedParams a = make_params(3);
  save_checkpoint(path, a, nullptr, TrainState{}, kMeta);
  EXPECT_EQ(read_checkpoint_metadata(path)["model"]["hidden"], 4);
  NamedParams b = make_params(4);
  load_checkpoint(path, b, nullptr, nullptr, nullptr);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].value, b[i].value));
  // Asking for optimizer state that was not saved is an error, and changes nothing.
  NamedParams c = make_params(5);
  const auto before = snapshot(c);
  optim::Sgd sgd(c, optim::SgdOptions{0.1, 0.9});
  EXPECT_TRUE(has(load_error(path, c, &sgd, nullptr, nullptr), "holds no optimizer state"));
  for (size_t i = 0; i < c.size(); ++i) EXPECT_TRUE(same_bits(c[i].value, before[i]));
}

// A state dict written by another tool (no attn metadata) loads as weights.
TEST(Checkpoint, LoadsPlainStateDict) {
  const std::string path = temp_path("plain.safetensors");
  NamedParams a = make_params(6);
  TensorList tl;
  for (const NamedParam& p : a) tl.emplace_back(p.name, p.value);
  write_safetensors(path, tl);
  NamedParams b = make_params(7);
  load_checkpoint(path, b, nullptr, nullptr, nullptr);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].value, b[i].value));
  TrainState ts;
  EXPECT_TRUE(has(load_error(path, b, nullptr, &ts, nullptr), "not an attn checkpoint"));
  EXPECT_THROW(read_checkpoint_metadata(path), Error);
}

// Every mismatch is reported (naming the tensor and both shapes) before anything changes.
TEST(Checkpoint, MismatchLeavesModelAndOptimizerUntouched) {
  const std::string path = temp_path("mismatch.safetensors");
  NamedParams saved = make_params(8, /*hidden=*/4);
  optim::Adam opt_saved(saved, optim::AdamOptions{});
  set_grads(saved, 9);
  opt_saved.step(saved);
  save_checkpoint(path, saved, &opt_saved, TrainState{}, kMeta);

  NamedParams target = make_params(10, /*hidden=*/6);
  optim::Adam opt(target, optim::AdamOptions{});
  set_grads(target, 11);
  opt.step(target);
  const auto before = snapshot(target);
  const auto opt_before = opt.state_dict();
  TrainState ts;
  ts.step = 77;
  json meta = {{"keep", true}};

  std::string msg = load_error(path, target, &opt, &ts, &meta);
  EXPECT_TRUE(has(msg, path));
  EXPECT_TRUE(has(msg, "tensor 'embed.weight' has shape [10, 4] but the model expects [10, 6]"));
  for (size_t i = 0; i < target.size(); ++i) EXPECT_TRUE(same_bits(target[i].value, before[i])) << target[i].name;
  const auto opt_after = opt.state_dict();
  for (size_t i = 0; i < opt_after.tensors.size(); ++i)
    EXPECT_TRUE(same_bits(opt_after.tensors[i].second, opt_before.tensors[i].second));
  EXPECT_EQ(opt.step_count(), 1);
  EXPECT_EQ(ts.step, 77);
  EXPECT_EQ(meta, (json{{"keep", true}}));

  // Missing parameter.
  NamedParams more = make_params(8);
  more.push_back({"extra.weight", Tensor::zeros({2}), Tensor()});
  EXPECT_TRUE(has(load_error(path, more, nullptr, nullptr, nullptr), "missing tensor 'extra.weight' (the model expects [2])"));
  // Unexpected parameter in the file.
  NamedParams fewer = make_params(8);
  fewer.pop_back();
  const auto fewer_before = snapshot(fewer);
  EXPECT_TRUE(has(load_error(path, fewer, nullptr, nullptr, nullptr), "unexpected tensor 'out.bias'"));
  for (size_t i = 0; i < fewer.size(); ++i) EXPECT_TRUE(same_bits(fewer[i].value, fewer_before[i]));
  // Optimizer of another kind: shapes fine, type wrong — params must stay untouched too.
  NamedParams same = make_params(12);
  const auto same_before = snapshot(same);
  optim::Sgd sgd(same, optim::SgdOptions{0.1, 0.9});
  msg = load_error(path, same, &sgd, nullptr, nullptr);
  EXPECT_TRUE(has(msg, "'adam'"));
  for (size_t i = 0; i < same.size(); ++i) EXPECT_TRUE(same_bits(same[i].value, same_before[i]));
}

TEST(Checkpoint, WrongDtypeAndBadOptimizerTensor) {
  const std::string path = temp_path("dtype.safetensors");
  NamedParams ps = make_params(13);
  // Same names and shapes, but out.bias stored as i32.
  TensorList tl;
  for (const NamedParam& p : ps) tl.emplace_back(p.name, p.name == "out.bias" ? p.value.to(DType::i32) : p.value);
  write_safetensors(path, tl, {{"format", "attn.checkpoint.v1"}});
  std::string msg = load_error(path, ps, nullptr, nullptr, nullptr);
  EXPECT_TRUE(has(msg, "tensor 'out.bias' is i32 [3] but the model expects f32"));

  // Optimizer state with a wrong shape is named with its prefix and both shapes.
  optim::Adam opt(ps, optim::AdamOptions{});
  save_checkpoint(path, ps, &opt, TrainState{}, kMeta);
  Safetensors st = read_safetensors(path);
  TensorList edited(st.tensors.begin(), st.tensors.end());
  for (auto& [name, t] : edited)
    if (name == "optim.exp_avg.out.weight") t = Tensor::zeros({4, 3});
  write_safetensors(path, edited, st.metadata);
  const auto before = snapshot(ps);
  msg = load_error(path, ps, &opt, nullptr, nullptr);
  EXPECT_TRUE(has(msg, "exp_avg.out.weight' has shape [4, 3] but parameter 'out.weight' has [3, 4]"));
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_TRUE(same_bits(ps[i].value, before[i]));
}

TEST(Checkpoint, TruncatedFileGivesClearError) {
  const std::string path = temp_path("trunc.safetensors");
  NamedParams ps = make_params(14);
  save_checkpoint(path, ps, nullptr, TrainState{}, kMeta);
  const std::string full = read_file(path);
  NamedParams target = make_params(15);
  const auto before = snapshot(target);
  for (size_t cut : {full.size() - 1, full.size() / 2, size_t{12}, size_t{3}}) {
    write_file_atomic(path, full.substr(0, cut));
    const std::string msg = load_error(path, target, nullptr, nullptr, nullptr);
    EXPECT_TRUE(has(msg, path)) << "cut at " << cut;
    EXPECT_TRUE(has(msg, "truncated")) << "cut at " << cut;
  }
  for (size_t i = 0; i < target.size(); ++i) EXPECT_TRUE(same_bits(target[i].value, before[i]));
  EXPECT_THROW(read_checkpoint_metadata(path), Error);
}

// A save that fails part-way (file-size limit: write() fails with EFBIG as a full disk fails
// with ENOSPC) keeps the previous checkpoint loadable and leaves no temporary file.
TEST(Checkpoint, FailedSaveKeepsPreviousCheckpoint) {
  const std::string dir = temp_path("full");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/model.safetensors";
  NamedParams old_params = make_params(16);
  save_checkpoint(path, old_params, nullptr, TrainState{}, kMeta);

  NamedParams big = make_params(17, /*hidden=*/4096);
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old_limit;
  lim.rlim_cur = 16384;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    save_checkpoint(path, big, nullptr, TrainState{}, kMeta);
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(has(msg, "save_checkpoint: cannot write '" + path + "'"));

  NamedParams check = make_params(18);
  load_checkpoint(path, check, nullptr, nullptr, nullptr);
  for (size_t i = 0; i < check.size(); ++i) EXPECT_TRUE(same_bits(check[i].value, old_params[i].value));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);

  // Unwritable destination: a path whose parent is a regular file.
  EXPECT_TRUE(has([&] {
    try {
      save_checkpoint(path + "/x.safetensors", old_params, nullptr, TrainState{}, kMeta);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }(), "cannot write"));
}

TEST(Checkpoint, RejectsParamNamesThatCollideWithOptimizerState) {
  NamedParams ps = {{"optim.x", Tensor::zeros({1}), Tensor()}};
  EXPECT_THROW(save_checkpoint(temp_path("c.safetensors"), ps, nullptr, TrainState{}, json::object()), Error);
}

}  // namespace
}  // namespace attn::io
