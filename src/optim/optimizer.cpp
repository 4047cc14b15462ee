#include "attn/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "attn/core/error.h"

namespace attn::optim {

using nlohmann::json;

Optimizer::Optimizer(NamedParams params, double lr, std::vector<std::string> state_kinds, const char* op)
    : params_(std::move(params)), lr_(lr), kinds_(std::move(state_kinds)) {
  ATTN_CHECK(std::isfinite(lr) && lr >= 0, op, ": lr must be finite and >= 0, got ", lr);
  std::set<std::string> names;
  for (const NamedParam& p : params_) {
    ATTN_CHECK(names.insert(p.name).second, op, ": parameter '", p.name, "' is given twice");
    ATTN_CHECK(p.value.defined(), op, ": parameter '", p.name, "' has no value");
    ATTN_CHECK(p.value.dtype() == DType::f32, op, ": parameter '", p.name, "' is ",
               dtype_name(p.value.dtype()), "; optimizers update f32 parameters");
    ATTN_CHECK(p.value.is_contiguous(), op, ": parameter '", p.name, "' ", shape_str(p.value.shape()),
               " is not contiguous; it must be updated in place");
  }
  state_.resize(kinds_.size());
  for (auto& per_param : state_)
    for (const NamedParam& p : params_) per_param.push_back(Tensor::zeros(p.value.shape()));
  param_steps_.assign(params_.size(), 0);
}

void Optimizer::set_lr(double lr) {
  ATTN_CHECK(std::isfinite(lr) && lr >= 0, type(), ".set_lr: lr must be finite and >= 0, got ", lr);
  lr_ = lr;
}

void Optimizer::step() {
  // Check every gradient first so that a bad one leaves all parameters unchanged.
  for (const NamedParam& p : params_) {
    if (!p.grad.defined()) continue;
    ATTN_CHECK(p.grad.shape() == p.value.shape(), type(), ".step: grad of '", p.name, "' has shape ",
               shape_str(p.grad.shape()), " but the parameter has ", shape_str(p.value.shape()));
    ATTN_CHECK(p.grad.dtype() == DType::f32, type(), ".step: grad of '", p.name, "' is ",
               dtype_name(p.grad.dtype()), ", expected f32");
  }
  std::vector<float*> st(kinds_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedParam& p = params_[i];
    if (!p.grad.defined()) continue;
    const Tensor g = p.grad.contiguous();
    for (size_t k = 0; k < kinds_.size(); ++k) st[k] = state_[k][i].data<float>();
    update(i, p.value.data<float>(), g.data<float>(), p.value.numel(), ++param_steps_[i], st);
  }
  ++step_count_;
}

void Optimizer::step(const NamedParams& current) {
  ATTN_CHECK(current.size() == params_.size(), type(), ".step: given ", current.size(),
             " parameters, the optimizer was built with ", params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    ATTN_CHECK(current[i].name == params_[i].name, type(), ".step: parameter ", i, " is '", current[i].name,
               "', the optimizer was built with '", params_[i].name, "'");
    ATTN_CHECK(current[i].value.raw_data() == params_[i].value.raw_data(), type(), ".step: parameter '",
               current[i].name, "' no longer shares storage with the one the optimizer was built with");
  }
  for (size_t i = 0; i < params_.size(); ++i) params_[i].grad = current[i].grad;
  step();
}

void Optimizer::zero_grad() {
  // Contiguous gradients are cleared in 256 KiB pieces, all parameters in one parallel loop
  // (one fork/join per step instead of a serial 4-byte-per-parameter fill).
  constexpr size_t kPiece = size_t{1} << 18;
  std::vector<std::pair<char*, size_t>> pieces;
  for (NamedParam& p : params_) {
    if (!p.grad.defined()) continue;
    if (!p.grad.is_contiguous()) {
      p.grad.fill(0.f);
      continue;
    }
    char* base = static_cast<char*>(p.grad.raw_data());
    const size_t bytes = static_cast<size_t>(p.grad.numel()) * dtype_size(p.grad.dtype());
    for (size_t off = 0; off < bytes; off += kPiece) pieces.emplace_back(base + off, std::min(kPiece, bytes - off));
  }
  const int64_t n = static_cast<int64_t>(pieces.size());
#pragma omp parallel for schedule(static) if (n >= 8)
  for (int64_t i = 0; i < n; ++i) std::memset(pieces[static_cast<size_t>(i)].first, 0, pieces[static_cast<size_t>(i)].second);
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState s;
  s.type = type();
  json steps = json::object();
  for (size_t i = 0; i < params_.size(); ++i) steps[params_[i].name] = param_steps_[i];
  s.scalars = {{"lr", lr_}, {"step_count", step_count_}, {"param_steps", steps}, {"hyper", hyperparameters()}};
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i)
      s.tensors.emplace_back(kinds_[k] + "." + params_[i].name, state_[k][i].clone());
  return s;
}

void Optimizer::check_state(const OptimizerState& s) const {
  const std::string op = std::string(type()) + ".load_state";
  ATTN_CHECK(s.type == type(), op, ": the state is for a '", s.type, "' optimizer, not '", type(), "'");
  const json& sc = s.scalars;
  ATTN_CHECK(sc.is_object() && sc.contains("lr") && sc["lr"].is_number() && sc.contains("step_count") &&
                 sc["step_count"].is_number_integer() && sc.contains("param_steps") && sc["param_steps"].is_object(),
             op, ": scalars must hold lr, step_count and param_steps; got ", sc.dump());
  const double lr = sc["lr"].get<double>();
  ATTN_CHECK(std::isfinite(lr) && lr >= 0, op, ": lr ", lr, " is not finite and >= 0");
  ATTN_CHECK(sc["step_count"].get<int64_t>() >= 0, op, ": negative step_count");
  const json& steps = sc["param_steps"];
  for (const NamedParam& p : params_) {
    ATTN_CHECK(steps.contains(p.name), op, ": no step count for parameter '", p.name, "'");
    ATTN_CHECK(steps[p.name].is_number_integer() && steps[p.name].get<int64_t>() >= 0, op,
               ": step count for '", p.name, "' must be a non-negative integer, got ", steps[p.name].dump());
  }
  ATTN_CHECK(steps.size() == params_.size(), op, ": step counts for ", steps.size(), " parameters, but the optimizer has ",
             params_.size());

  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : s.tensors)
    ATTN_CHECK(given.emplace(name, &t).second, op, ": state tensor '", name, "' is given twice");
  size_t expected = 0;
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (const NamedParam& p : params_) {
      const std::string name = kinds_[k] + "." + p.name;
      auto it = given.find(name);
      ATTN_CHECK(it != given.end(), op, ": missing state tensor '", name, "' (expected ",
                 shape_str(p.value.shape()), ")");
      const Tensor& t = *it->second;
      ATTN_CHECK(t.defined() && t.dtype() == DType::f32, op, ": state tensor '", name, "' is ",
                 t.defined() ? dtype_name(t.dtype()) : "undefined", ", expected f32");
      ATTN_CHECK(t.shape() == p.value.shape(), op, ": state tensor '", name, "' has shape ", shape_str(t.shape()),
                 " but parameter '", p.name, "' has ", shape_str(p.value.shape()));
      ++expected;
    }
  if (given.size() != expected) {
    for (const auto& [name, t] : given) {
      bool known = false;
      for (size_t k = 0; k < kinds_.size() && !known; ++k)
        for (const NamedParam& p : params_)
          if (name == kinds_[k] + "." + p.name) known = true;
      ATTN_CHECK(known, op, ": unexpected state tensor '", name, "'");
    }
  }
}

void Optimizer::load_state(const OptimizerState& s) {
  check_state(s);
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : s.tensors) given.emplace(name, &t);
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i)
      state_[k][i].copy_from(*given.at(kinds_[k] + "." + params_[i].name));
  for (size_t i = 0; i < params_.size(); ++i) param_steps_[i] = s.scalars["param_steps"][params_[i].name].get<int64_t>();
  step_count_ = s.scalars["step_count"].get<int64_t>();
  lr_ = s.scalars["lr"].get<double>();
}

}  // namespace attn::optim
