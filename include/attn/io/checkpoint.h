// Training checkpoints: one safetensors file holding
//   <param name>                 model parameters under their state_dict names (readable by
//                                PyTorch / safetensors tools as a plain state dict)
//   optim.<kind>.<param name>    optimizer state, e.g. optim.exp_avg.encoder.embed.weight
// and in "__metadata__":
//   format = "attn.checkpoint.v1", step, epoch, rng_seed, rng_counter (decimal strings),
//   optimizer = JSON {type, scalars} (absent without an optimizer), meta = the caller's JSON
//   (model config, vocabulary, ...).
// Files are written atomically: a failed save leaves the previous checkpoint as it was.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "attn/core/named_param.h"
#include "attn/core/rng.h"
#include "attn/optim/optimizer.h"

namespace attn::io {

// Training progress saved beside the weights so that a run resumes exactly.
struct TrainState {
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;  // completed epochs
  Rng rng = Rng(0, 0);  // data shuffling / dropout generator (seed + counter)
};

// Writes params, the optimizer's state (when `optimizer` is not null), `state` and `meta`.
// Throws attn::Error naming the path when the file cannot be written (previous file kept).
void save_checkpoint(const std::string& path, const NamedParams& params, const optim::Optimizer* optimizer,
                     const TrainState& state, const nlohmann::json& meta);

// Loads a checkpoint into existing objects. Everything is validated before anything is
// changed — every parameter present with dtype f32 and the same shape, no unexpected
// tensors, the optimizer state matching the optimizer (type, tensors, shapes), step / RNG /
// meta well formed — so that on any error (an attn::Error naming the path, the tensor and
// both shapes) params, optimizer, state and meta are left untouched.
// Parameter values are copied into `params` (which alias the module's tensors).
// `optimizer`, `state` and `meta` may be null to skip them; optimizer tensors in the file
// are then ignored. A plain safetensors state dict (no attn metadata, e.g. exported from
// PyTorch) can be loaded with optimizer and state null.
void load_checkpoint(const std::string& path, NamedParams& params, optim::Optimizer* optimizer, TrainState* state,
                     nlohmann::json* meta);

// The caller's metadata JSON (model config, vocabulary), read from the header only — for
// building the model before load_checkpoint. Throws attn::Error when the file is not an
// attn checkpoint.
nlohmann::json read_checkpoint_metadata(const std::string& path);

}  // namespace attn::io
