// attn::nn::Module — the base of every layer: named parameters and buffers, child modules,
// train / eval mode. Parameter names follow PyTorch's state_dict ("weight", "bias",
// "layers.0.self_attn.in_proj_weight", ...) so checkpoints are readable elsewhere.
//
// Parameters are leaf Vars with requires_grad whose grad is allocated (zeros) when the
// parameter is registered, so named_parameters() hands optimizers and checkpoints value and
// grad Tensors that share storage with the module: updates are in place.
//
// Modules are created once and held by shared_ptr (children register by pointer); they are
// neither copyable nor movable. Initialisation is deterministic from an attn::Rng.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/autograd/var.h"
#include "attn/core/named_param.h"
#include "attn/core/rng.h"

namespace attn::nn {

using ag::Var;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its children, depth first in registration order,
  // names joined with '.'.
  NamedParams named_parameters(const std::string& prefix = "") const;
  std::vector<Var> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  // The parameter with this full name; throws attn::Error listing none when absent.
  Var parameter(const std::string& name) const;
  int64_t num_parameters() const;

  // Training mode (dropout active) for this module and its children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Sets every parameter's grad to zero.
  void zero_grad();
  // Converts parameters and floating buffers to dtype (f64 for gradient checks; grads are
  // reallocated as zeros). Pointers handed out earlier by named_parameters() go stale.
  void to(DType dtype);

 protected:
  // `slot` is a member Var of the derived module; it becomes a leaf with requires_grad.
  void register_parameter(const std::string& name, Var* slot, Tensor value);
  void register_buffer(const std::string& name, Tensor* slot);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  bool training_ = true;
  std::vector<std::pair<std::string, Var*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Initialisers (PyTorch's defaults), writing f32 values from rng.
Tensor uniform_init(const Shape& shape, double bound, Rng& rng);  // U(-bound, bound)
Tensor normal_init(const Shape& shape, double stddev, Rng& rng);  // N(0, stddev²)

// Per-call dropout stream: a seed fixed at construction and a counter advanced by each use,
// so a run is reproducible from its seed (and resumable from (seed, counter)).
struct DropoutStream {
  uint64_t seed = 0;
  uint64_t counter = 0;
  // Offset for the next `n` random numbers.
  uint64_t take(int64_t n) {
    uint64_t c = counter;
    counter += static_cast<uint64_t>(n);
    return c;
  }
};

}  // namespace attn::nn
