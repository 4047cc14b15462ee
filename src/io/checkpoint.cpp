#include "attn/io/checkpoint.h"

#include <charconv>
#include <map>
#include <set>

#include "attn/core/error.h"
#include "attn/io/safetensors.h"

namespace attn::io {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "attn.checkpoint.v1";
constexpr const char* kOptimPrefix = "optim.";

std::string where(const std::string& path) { return "checkpoint '" + path + "': "; }

template <typename T>
T parse_integer(const StringMap& m, const char* key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) fail(where(path), "metadata lacks '", key, "'");
  T v{};
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    fail(where(path), "metadata '", key, "' = '", s, "' is not an integer");
  return v;
}

json parse_json(const StringMap& m, const char* key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) fail(where(path), "metadata lacks '", key, "'");
  try {
    return json::parse(it->second);
  } catch (const json::exception& e) {
    fail(where(path), "metadata '", key, "' is not valid JSON: ", e.what());
  }
}

std::string some_names(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > 5) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, const NamedParams& params, const optim::Optimizer* optimizer,
                     const TrainState& state, const json& meta) {
  TensorList tensors;
  for (const NamedParam& p : params) {
    ATTN_CHECK(p.name.rfind(kOptimPrefix, 0) != 0, "save_checkpoint: parameter name '", p.name,
               "' collides with the optimizer-state prefix '", kOptimPrefix, "'");
    ATTN_CHECK(p.value.defined(), "save_checkpoint: parameter '", p.name, "' has no value");
    tensors.emplace_back(p.name, p.value);
  }
  StringMap md = {{"format", kFormat},
                  {"step", std::to_string(state.step)},
                  {"epoch", std::to_string(state.epoch)},
                  {"rng_seed", std::to_string(state.rng.seed())},
                  {"rng_counter", std::to_string(state.rng.counter())},
                  {"meta", meta.dump()}};
  if (optimizer) {
    optim::OptimizerState os = optimizer->state_dict();
    md["optimizer"] = json{{"type", os.type}, {"scalars", os.scalars}}.dump();
    for (auto& [name, t] : os.tensors) tensors.emplace_back(kOptimPrefix + name, std::move(t));
  }
  try {
    write_safetensors(path, tensors, md);
  } catch (const Error& e) {
    fail("save_checkpoint: ", e.what());
  }
}

void load_checkpoint(const std::string& path, NamedParams& params, optim::Optimizer* optimizer, TrainState* state,
                     json* meta) {
  // 1. Read and validate the whole file and every tensor before touching anything.
  const Safetensors st = read_safetensors(path);
  const bool is_attn = st.metadata.count("format") != 0;
  if (is_attn && st.metadata.at("format") != kFormat)
    fail(where(path), "format '", st.metadata.at("format"), "' is not ", kFormat);
  if (!is_attn && (optimizer || state || meta))
    fail(where(path), "not an attn checkpoint (no 'format' metadata): it holds weights only; "
                      "load it with optimizer, state and meta set to null");

  std::set<std::string> used;
  for (const NamedParam& p : params) {
    auto it = st.tensors.find(p.name);
    if (it == st.tensors.end())
      fail(where(path), "missing tensor '", p.name, "' (the model expects ", shape_str(p.value.shape()), ")");
    const Tensor& t = it->second;
    if (t.dtype() != DType::f32)
      fail(where(path), "tensor '", p.name, "' is ", dtype_name(t.dtype()), " ", shape_str(t.shape()),
           " but the model expects f32");
    if (t.shape() != p.value.shape())
      fail(where(path), "tensor '", p.name, "' has shape ", shape_str(t.shape()), " but the model expects ",
           shape_str(p.value.shape()));
    used.insert(p.name);
  }
  std::vector<std::string> unexpected;
  optim::OptimizerState os;
  for (const auto& [name, t] : st.tensors) {
    if (used.count(name)) continue;
    if (name.rfind(kOptimPrefix, 0) == 0 && is_attn) {
      if (optimizer) os.tensors.emplace_back(name.substr(std::char_traits<char>::length(kOptimPrefix)), t);
      continue;
    }
    unexpected.push_back(name);
  }
  if (!unexpected.empty())
    fail(where(path), "unexpected tensor", unexpected.size() > 1 ? "s " : " ", some_names(unexpected),
         " not in the model (a different model configuration?)");

  if (optimizer) {
    if (!st.metadata.count("optimizer"))
      fail(where(path), "holds no optimizer state, but an optimizer ('", optimizer->type(), "') was given");
    const json o = parse_json(st.metadata, "optimizer", path);
    if (!o.is_object() || !o.contains("type") || !o["type"].is_string() || !o.contains("scalars"))
      fail(where(path), "metadata 'optimizer' lacks type / scalars");
    os.type = o["type"].get<std::string>();
    os.scalars = o["scalars"];
    try {
      optimizer->check_state(os);
    } catch (const Error& e) {
      fail(where(path), e.what(), " (state tensors are stored as '", kOptimPrefix, "<kind>.<param>')");
    }
  }
  TrainState new_state;
  if (state) {
    new_state.step = parse_integer<int64_t>(st.metadata, "step", path);
    new_state.epoch = parse_integer<int64_t>(st.metadata, "epoch", path);
    new_state.rng = Rng(parse_integer<uint64_t>(st.metadata, "rng_seed", path),
                        parse_integer<uint64_t>(st.metadata, "rng_counter", path));
  }
  json new_meta;
  if (meta) new_meta = parse_json(st.metadata, "meta", path);

  // 2. Commit: nothing below can fail on validated input.
  for (NamedParam& p : params) p.value.copy_from(st.tensors.at(p.name));
  if (optimizer) optimizer->load_state(os);
  if (state) *state = new_state;
  if (meta) *meta = std::move(new_meta);
}

json read_checkpoint_metadata(const std::string& path) {
  const StringMap md = read_safetensors_metadata(path);
  auto it = md.find("format");
  if (it == md.end()) fail(where(path), "not an attn checkpoint (no 'format' metadata)");
  if (it->second != kFormat) fail(where(path), "format '", it->second, "' is not ", kFormat);
  return parse_json(md, "meta", path);
}

}  // namespace attn::io
