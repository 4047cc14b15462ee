// libFuzzer target for checkpoint loading: the bytes are a would-be checkpoint file (safetensors
// header JSON + offsets + data + attn metadata), loaded into a small fixed model
// (w [2, 3], b [3]) with an Adam optimizer, a TrainState and meta. Any input must either load
// or throw attn::Error; on error nothing (params, optimizer state, step, meta) may change.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "attn/core/tensor.h"
#include "attn/io/atomic_file.h"
#include "attn/io/checkpoint.h"
#include "attn/optim/adam.h"

namespace {

bool same(const attn::Tensor& a, const attn::Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

const std::string& path() {
  static const std::string p = "/tmp/attn_fuzz_ckpt." + std::to_string(::getpid()) + ".safetensors";
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::io::write_file_atomic(path(), data, size);

  attn::NamedParams params = {{"w", attn::Tensor::full({2, 3}, 0.5f), attn::Tensor::full({2, 3}, 0.1f)},
                              {"b", attn::Tensor::full({3}, -1.f), attn::Tensor::full({3}, 0.2f)}};
  attn::optim::Adam adam(params, {});
  adam.step();  // non-trivial state to compare against
  const attn::Tensor w0 = params[0].value.clone(), b0 = params[1].value.clone();
  const attn::optim::OptimizerState s0 = adam.state_dict();
  attn::io::TrainState state;
  state.step = 7;
  nlohmann::json meta = {{"keep", 1}};

  // The weights-only and metadata-only paths must fail cleanly too (into a scratch model).
  {
    attn::NamedParams scratch = {{"w", attn::Tensor::zeros({2, 3}), attn::Tensor()},
                                 {"b", attn::Tensor::zeros({3}), attn::Tensor()}};
    try {
      attn::io::load_checkpoint(path(), scratch, nullptr, nullptr, nullptr);
    } catch (const attn::Error&) {
    }
    try {
      (void)attn::io::read_checkpoint_metadata(path());
    } catch (const attn::Error&) {
    }
  }

  bool loaded = false;
  try {
    attn::io::load_checkpoint(path(), params, &adam, &state, &meta);
    loaded = true;
  } catch (const attn::Error&) {
  }
  if (!loaded) {
    const attn::optim::OptimizerState s1 = adam.state_dict();
    if (!same(params[0].value, w0) || !same(params[1].value, b0) || state.step != 7 || meta != nlohmann::json{{"keep", 1}} ||
        s1.tensors.size() != s0.tensors.size() || s1.scalars != s0.scalars)
      __builtin_trap();
    for (size_t i = 0; i < s0.tensors.size(); ++i)
      if (s1.tensors[i].first != s0.tensors[i].first || !same(s1.tensors[i].second, s0.tensors[i].second))
        __builtin_trap();
  } else {
    // A loaded optimizer must be able to step and save again.
    adam.step();
    attn::io::save_checkpoint(path(), params, &adam, state, meta);
  }
  return 0;
}
