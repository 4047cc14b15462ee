#include "attn/nn/module.h"

namespace attn::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

void Module::register_parameter(const std::string& name, Var* slot, Tensor value) {
  for (auto& [n, p] : params_)
    ATTN_CHECK(n != name, "Module: parameter '", name, "' registered twice");
  Var v(std::move(value), true);
  v.zero_grad();
  *slot = v;
  params_.emplace_back(name, slot);
}

void Module::register_buffer(const std::string& name, Tensor* slot) { buffers_.emplace_back(name, slot); }

NamedParams Module::named_parameters(const std::string& prefix) const {
  NamedParams out;
  for (const auto& [name, slot] : params_) out.push_back({join(prefix, name), slot->value(), slot->grad()});
  for (const auto& [name, child] : children_) {
    NamedParams c = child->named_parameters(join(prefix, name));
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (const auto& [name, slot] : params_) out.push_back(*slot);
  for (const auto& [name, child] : children_) {
    auto c = child->parameters();
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, slot] : buffers_) out.emplace_back(join(prefix, name), *slot);
  for (const auto& [name, child] : children_) {
    auto c = child->named_buffers(join(prefix, name));
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

Var Module::parameter(const std::string& name) const {
  for (const auto& [n, slot] : params_)
    if (n == name) return *slot;
  for (const auto& [cn, child] : children_)
    if (name.size() > cn.size() && name.compare(0, cn.size(), cn) == 0 && name[cn.size()] == '.')
      return child->parameter(name.substr(cn.size() + 1));
  fail("Module::parameter: no parameter named '", name, "'");
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Var& v : parameters()) n += v.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [name, slot] : params_) slot->zero_grad();
  for (auto& [name, child] : children_) child->zero_grad();
}

void Module::to(DType dtype) {
  for (auto& [name, slot] : params_) {
    Var v(slot->value().to(dtype).contiguous().clone(), true);
    v.zero_grad();
    *slot = v;
  }
  for (auto& [name, slot] : buffers_)
    if (slot->defined() && (slot->dtype() == DType::f32 || slot->dtype() == DType::f64)) *slot = slot->to(dtype);
  for (auto& [name, child] : children_) child->to(dtype);
}

Tensor uniform_init(const Shape& shape, double bound, Rng& rng) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>((2 * rng.uniform() - 1) * bound);
  return t;
}

Tensor normal_init(const Shape& shape, double stddev, Rng& rng) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal() * stddev);
  return t;
}

}  // namespace attn::nn
