// Optimizer: the common base of SGD, Adam and AdamW. It updates NamedParams in place (their
// `value` tensors share storage with the module), keeps its per-parameter state as named
// tensors so that checkpoints can store it, and follows torch.optim 1.13's semantics:
// a parameter whose `grad` is undefined is skipped and its state left as it is.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "attn/core/named_param.h"
#include "attn/core/tensor.h"

namespace attn::optim {

// An optimizer's state, as stored in a checkpoint.
struct OptimizerState {
  std::string type;        // "sgd", "adam", "adamw"
  nlohmann::json scalars;  // {"lr": .., "step_count": .., "param_steps": {name: n}, "hyper": {..}}
  // "<kind>.<param name>", e.g. "exp_avg.decoder.out.weight" (torch's state names).
  std::vector<std::pair<std::string, Tensor>> tensors;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter with a defined gradient. Throws attn::Error (before
  // changing anything) when a gradient's shape or dtype differs from its parameter's.
  void step();
  // The same, taking the gradients from `current` — the module's NamedParams as they are
  // now (same names, same order). Use this when the module allocates its gradient tensors
  // only during backward, so that the aliases captured at construction have none.
  void step(const NamedParams& current);
  // Sets every defined gradient to zero.
  void zero_grad();

  double lr() const { return lr_; }
  // For learning-rate schedules: call before step() with schedule.lr(step_count()).
  void set_lr(double lr);
  // Number of step() calls so far (restored by load_state).
  int64_t step_count() const { return step_count_; }
  const NamedParams& params() const { return params_; }
  virtual const char* type() const = 0;
  // Hyperparameters other than lr, as JSON (stored in checkpoints for reference).
  virtual nlohmann::json hyperparameters() const = 0;

  // A deep copy of the state (tensors are cloned).
  OptimizerState state_dict() const;
  // Throws attn::Error naming the first problem (type, missing / unexpected tensor, dtype,
  // shape with both shapes, malformed scalars) without modifying anything.
  void check_state(const OptimizerState& state) const;
  // check_state, then copies the state in: tensors, per-parameter step counts, step_count
  // and lr (as torch's load_state_dict does). Other hyperparameters keep the values this
  // optimizer was constructed with.
  void load_state(const OptimizerState& state);

 protected:
  // `state_kinds`: names of the per-parameter state tensors this optimizer keeps (each has
  // its parameter's shape, f32, zero-initialised).
  Optimizer(NamedParams params, double lr, std::vector<std::string> state_kinds, const char* op);

  // Updates parameter i; `param_step` counts this parameter's updates including this one
  // (torch's state['step']); `state[k]` is state tensor kind k of this parameter.
  virtual void update(size_t i, float* value, const float* grad, int64_t n, int64_t param_step,
                      std::vector<float*>& state) = 0;

  NamedParams params_;
  double lr_;

 private:
  std::vector<std::string> kinds_;
  std::vector<std::vector<Tensor>> state_;  // [kind][param]
  std::vector<int64_t> param_steps_;
  int64_t step_count_ = 0;
};

}  // namespace attn::optim
