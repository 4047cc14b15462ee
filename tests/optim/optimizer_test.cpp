// SGD, Adam, AdamW, learning-rate schedules and gradient clipping against PyTorch 1.13
// (fixtures from tools/make_fixtures.py; see tests/fixtures/README.md).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "attn/core/rng.h"
#include "attn/optim/adam.h"
#include "attn/optim/clip_grad.h"
#include "attn/optim/lr_schedule.h"
#include "attn/optim/sgd.h"
#include "common/fixtures.h"

namespace attn::optim {
namespace {

using attn::testing::load_fixture;
using attn::testing::tensors_close;
using nlohmann::json;

// Float32 updates in torch's operation order: agreement to ~1e-6 relative; the absolute
// floor covers values that pass near zero.
constexpr double kRtol = 1e-6, kAtol = 1e-7;

NamedParams fixture_params(const io::Safetensors& f) {
  NamedParams ps;
  for (const char* n : {"w", "b"}) ps.push_back({n, f.at(std::string("param.") + n).clone(), Tensor()});
  return ps;
}

std::unique_ptr<Optimizer> make_optimizer(const json& cfg, NamedParams ps) {
  const std::string type = cfg["type"];
  if (type == "sgd") {
    SgdOptions o;
    o.lr = cfg["lr"];
    o.momentum = cfg["momentum"];
    o.dampening = cfg["dampening"];
    o.weight_decay = cfg["weight_decay"];
    o.nesterov = cfg["nesterov"];
    return std::make_unique<Sgd>(std::move(ps), o);
  }
  AdamOptions o;
  o.lr = cfg["lr"];
  o.beta1 = cfg["betas"][0];
  o.beta2 = cfg["betas"][1];
  o.eps = cfg["eps"];
  o.weight_decay = cfg["weight_decay"];
  if (type == "adamw") return std::make_unique<AdamW>(std::move(ps), o);
  return std::make_unique<Adam>(std::move(ps), o);
}

// The fixture's schedule config uses min_lr_ratio; ours takes min_lr.
std::unique_ptr<LrSchedule> make_schedule(json s, double lr) {
  if (s.contains("min_lr_ratio")) s["min_lr"] = lr * s["min_lr_ratio"].get<double>();
  return make_lr_schedule(s, lr);
}

void run_optimizer_fixture(const std::string& name) {
  SCOPED_TRACE(name);
  const io::Safetensors f = load_fixture(name);
  const json cfg = json::parse(f.meta("config"));
  NamedParams ps = fixture_params(f);
  auto opt = make_optimizer(cfg, ps);
  EXPECT_EQ(opt->type(), cfg["type"].get<std::string>());
  auto sched = make_schedule(cfg["schedule"], cfg["lr"]);
  const int steps = cfg["steps"];
  const std::vector<float> lrs = f.at("output.lr").to_vector();
  ASSERT_EQ(lrs.size(), static_cast<size_t>(steps));
  for (int s = 0; s < steps; ++s) {
    for (NamedParam& p : ps) p.grad = f.at("input.grad.step" + std::to_string(s) + "." + p.name).clone();
    if (!cfg["clip_grad_norm"].is_null()) {
      const double norm = clip_grad_norm(ps, cfg["clip_grad_norm"].get<double>());
      const double expected = f.at("output.grad_norm").to_vector()[s];
      EXPECT_NEAR(norm, expected, 1e-6 * expected) << "step " << s;
    }
    const double lr = sched->lr(opt->step_count());
    EXPECT_NEAR(lr, lrs[s], 1e-6 * lrs[s]) << "lr at step " << s;
    opt->set_lr(lr);
    opt->step(ps);  // grads were set after the optimizer was built
    for (const NamedParam& p : ps)
      EXPECT_TRUE(tensors_close(p.value, f.at("output.step" + std::to_string(s) + ".param." + p.name), kRtol, kAtol,
                                "step " + std::to_string(s) + " param " + p.name));
  }
  // Optimizer state after the last step, by torch's state names.
  const OptimizerState st = opt->state_dict();
  const auto expected_state = f.names_with_prefix("output.state.");
  ASSERT_EQ(st.tensors.size(), expected_state.size());
  for (const auto& [sname, t] : st.tensors)
    EXPECT_TRUE(tensors_close(t, f.at("output.state." + sname), kRtol, kAtol, sname));
}

TEST(OptimizerVsTorch, SgdMomentumDampeningWeightDecay) { run_optimizer_fixture("optim_sgd_momentum"); }
TEST(OptimizerVsTorch, SgdNesterovCosine) { run_optimizer_fixture("optim_sgd_nesterov"); }
TEST(OptimizerVsTorch, AdamL2InverseSqrt) { run_optimizer_fixture("optim_adam"); }
TEST(OptimizerVsTorch, AdamWClippedCosine) { run_optimizer_fixture("optim_adamw"); }

TEST(LrScheduleVsTorch, AllSchedules) {
  const io::Safetensors f = load_fixture("lr_schedules");
  const json cfg = json::parse(f.meta("config"));
  const double base = cfg["base_lr"];
  for (const char* name : {"constant", "inverse_sqrt", "cosine"}) {
    auto sched = make_schedule(cfg[name], base);
    const std::vector<float> expected = f.at(std::string("output.") + name).to_vector();
    ASSERT_EQ(expected.size(), 12u) << name;
    for (size_t s = 0; s < expected.size(); ++s)
      EXPECT_NEAR(sched->lr(static_cast<int64_t>(s)), expected[s], 1e-6 * expected[s]) << name << " step " << s;
  }
}

TEST(LrSchedule, ShapesOfTheCurves) {
  InverseSqrtLr inv(1.0, 4);
  EXPECT_DOUBLE_EQ(inv.lr(0), 0.25);  // (0 + 1) / 4
  EXPECT_DOUBLE_EQ(inv.lr(3), 1.0);   // peak at the end of warm-up
  EXPECT_DOUBLE_EQ(inv.lr(15), 0.5);  // sqrt(4 / 16)
  CosineLr cos(1.0, 2, 12, 0.1);
  EXPECT_DOUBLE_EQ(cos.lr(0), 0.5);
  EXPECT_DOUBLE_EQ(cos.lr(2), 1.0);
  EXPECT_NEAR(cos.lr(7), 0.55, 1e-12);  // half way down: 0.1 + 0.9 * 0.5
  EXPECT_DOUBLE_EQ(cos.lr(12), 0.1);
  EXPECT_DOUBLE_EQ(cos.lr(1000), 0.1);
  EXPECT_THROW(InverseSqrtLr(1.0, 0), Error);
  EXPECT_THROW(CosineLr(1.0, 5, 3), Error);
  EXPECT_THROW(make_lr_schedule(json{{"type", "linear"}}, 1.0), Error);
  EXPECT_THROW(make_lr_schedule(json{{"type", "inverse_sqrt"}}, 1.0), Error);  // no warmup
}

void run_clip_fixture(const std::string& name) {
  SCOPED_TRACE(name);
  const io::Safetensors f = load_fixture(name);
  const json cfg = json::parse(f.meta("config"));
  NamedParams ps;
  for (const char* n : {"w", "b"})
    ps.push_back({n, Tensor::zeros(f.at(std::string("input.grad.") + n).shape()),
                  f.at(std::string("input.grad.") + n).clone()});
  const double norm_type =
      cfg["norm_type"].is_string() ? std::numeric_limits<double>::infinity() : cfg["norm_type"].get<double>();
  const double total = clip_grad_norm(ps, cfg["max_norm"].get<double>(), norm_type);
  const double expected = f.at("output.total_norm").to_vector()[0];
  EXPECT_NEAR(total, expected, 1e-6 * expected);
  for (const NamedParam& p : ps)
    EXPECT_TRUE(tensors_close(p.grad, f.at("output.grad." + p.name), kRtol, kAtol, p.name));
}

TEST(ClipGradNormVsTorch, L2) { run_clip_fixture("clip_grad_norm_l2"); }
TEST(ClipGradNormVsTorch, Inf) { run_clip_fixture("clip_grad_norm_inf"); }
TEST(ClipGradNormVsTorch, BelowMaxNormIsUnchanged) { run_clip_fixture("clip_grad_norm_noop"); }

TEST(ClipGradNorm, SkipsUndefinedGradsAndReportsNonFinite) {
  NamedParams ps = {{"a", Tensor::zeros({2}), Tensor::from_vector({3, 4}, {2})}, {"b", Tensor::zeros({3}), Tensor()}};
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 10.0), 5.0);
  NamedParams none = {{"b", Tensor::zeros({3}), Tensor()}};
  EXPECT_EQ(clip_grad_norm(none, 1.0), 0.0);
  NamedParams bad = {{"a", Tensor::zeros({2}), Tensor::from_vector({NAN, 1}, {2})}};
  EXPECT_THROW(clip_grad_norm(bad, 1.0, 2.0, true), Error);
  EXPECT_TRUE(std::isnan(bad[0].grad.get({1})) == false) << "error_if_nonfinite must leave the grads untouched";
  EXPECT_TRUE(std::isnan(clip_grad_norm(bad, 1.0)));
}

// Saving the state and loading it into a fresh optimizer gives bit-identical later steps.
void expect_resume_identical(const std::function<std::unique_ptr<Optimizer>(NamedParams)>& make) {
  Rng rng(7);
  auto rand_tensor = [&](const Shape& s) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal());
    return t;
  };
  NamedParams a = {{"w", rand_tensor({3, 5}), Tensor()}, {"b", rand_tensor({5}), Tensor()}};
  auto opt_a = make(a);
  for (int s = 0; s < 2; ++s) {
    for (NamedParam& p : a) p.grad = rand_tensor(p.value.shape());
    opt_a->step(a);
  }
  NamedParams b = {{"w", a[0].value.clone(), Tensor()}, {"b", a[1].value.clone(), Tensor()}};
  auto opt_b = make(b);
  opt_b->set_lr(123.0);  // overwritten by load_state
  opt_b->load_state(opt_a->state_dict());
  EXPECT_EQ(opt_b->step_count(), 2);
  EXPECT_EQ(opt_b->lr(), opt_a->lr());
  for (int s = 0; s < 2; ++s) {
    for (size_t i = 0; i < a.size(); ++i) {
      a[i].grad = rand_tensor(a[i].value.shape());
      b[i].grad = a[i].grad.clone();
    }
    opt_a->step(a);
    opt_b->step(b);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].value.shape(), b[i].value.shape());
    EXPECT_EQ(std::memcmp(a[i].value.raw_data(), b[i].value.raw_data(), a[i].value.numel() * 4), 0) << a[i].name;
  }
}

TEST(OptimizerState, SaveLoadGivesIdenticalSteps) {
  expect_resume_identical([](NamedParams p) {
    return std::make_unique<Sgd>(std::move(p), SgdOptions{0.1, 0.9, 0.0, 1e-2, true});
  });
  expect_resume_identical([](NamedParams p) {
    return std::make_unique<Adam>(std::move(p), AdamOptions{1e-2, 0.9, 0.99, 1e-8, 1e-2});
  });
  expect_resume_identical([](NamedParams p) {
    return std::make_unique<AdamW>(std::move(p), AdamOptions{1e-2, 0.9, 0.99, 1e-8, 1e-1});
  });
}

TEST(OptimizerState, BadStateIsRejectedWithoutChanges) {
  NamedParams ps = {{"w", Tensor::zeros({2, 3}), Tensor::full({2, 3}, 1.f)}};
  Adam adam(ps, AdamOptions{});
  adam.step();
  const OptimizerState good = adam.state_dict();
  auto message = [&](const OptimizerState& s) {
    try {
      adam.load_state(s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  OptimizerState wrong_shape = good;
  wrong_shape.tensors[0].second = Tensor::zeros({3, 2});
  std::string msg = message(wrong_shape);
  EXPECT_NE(msg.find("exp_avg.w"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  OptimizerState missing = good;
  missing.tensors.pop_back();
  EXPECT_NE(message(missing).find("missing state tensor 'exp_avg_sq.w'"), std::string::npos);
  OptimizerState extra = good;
  extra.tensors.emplace_back("exp_avg.v", Tensor::zeros({1}));
  EXPECT_NE(message(extra).find("unexpected state tensor 'exp_avg.v'"), std::string::npos);
  OptimizerState other = good;
  other.type = "sgd";
  EXPECT_NE(message(other).find("'sgd'"), std::string::npos);
  // Nothing changed: the state is still the one after one step.
  const OptimizerState after = adam.state_dict();
  ASSERT_EQ(after.tensors.size(), good.tensors.size());
  for (size_t i = 0; i < after.tensors.size(); ++i)
    EXPECT_TRUE(tensors_close(after.tensors[i].second, good.tensors[i].second, 0, 0, after.tensors[i].first));
  EXPECT_EQ(after.scalars, good.scalars);
}

TEST(Optimizer, RejectsBadArgumentsAndGrads) {
  NamedParams ps = {{"w", Tensor::zeros({2, 3}), Tensor()}};
  EXPECT_THROW(Sgd(ps, SgdOptions{-1.0}), Error);
  EXPECT_THROW(Sgd(ps, SgdOptions{0.1, 0.0, 0.0, 0.0, true}), Error);  // nesterov without momentum
  EXPECT_THROW(Adam(ps, AdamOptions{1e-3, 1.0}), Error);
  NamedParams dup = {{"w", Tensor::zeros({1}), Tensor()}, {"w", Tensor::zeros({1}), Tensor()}};
  EXPECT_THROW(Sgd(dup, SgdOptions{}), Error);

  ps[0].grad = Tensor::zeros({3, 2});
  Sgd sgd(ps, SgdOptions{0.1});
  try {
    sgd.step();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  }
  EXPECT_EQ(sgd.step_count(), 0);
}

TEST(Optimizer, SkipsParamsWithoutGradAndZeroGrad) {
  NamedParams ps = {{"a", Tensor::full({2}, 1.f), Tensor::full({2}, 1.f)}, {"b", Tensor::full({2}, 1.f), Tensor()}};
  Sgd sgd(ps, SgdOptions{0.5});
  sgd.step();
  EXPECT_EQ(ps[0].value.to_vector(), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_EQ(ps[1].value.to_vector(), (std::vector<float>{1.f, 1.f}));
  sgd.zero_grad();
  EXPECT_EQ(ps[0].grad.to_vector(), (std::vector<float>{0.f, 0.f}));
  EXPECT_FALSE(ps[1].grad.defined());
}

// zero_grad clears large gradients (in pieces, over threads) to the last element, and strided ones.
TEST(Optimizer, ZeroGradClearsLargeAndStridedGradients) {
  const int64_t n = 3 * (int64_t{1} << 16) + 5;  // several 256 KiB pieces and a tail
  Tensor strided_grad = Tensor::full({4, 6}, 2.f).transpose(0, 1);
  NamedParams ps = {{"big", Tensor::full({n}, 1.f), Tensor::full({n}, 3.f)},
                    {"small", Tensor::full({3}, 1.f), Tensor::full({3}, 3.f)},
                    {"strided", Tensor::full({6, 4}, 1.f), strided_grad}};
  Sgd sgd(ps, SgdOptions{0.5});
  sgd.zero_grad();
  for (const NamedParam& p : ps) {
    const std::vector<float> g = p.grad.to_vector();
    ASSERT_EQ(static_cast<int64_t>(g.size()), p.value.numel()) << p.name;
    for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], 0.f) << p.name << " element " << i;
  }
}

// Large parameters are updated by several threads: the result must not depend on how many.
TEST(Optimizer, ThreadCountDoesNotChangeLargeUpdates) {
  const int64_t n = 200000;  // above the parallel threshold
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Rng rng(3);
    Tensor v = Tensor::empty({n}), g = Tensor::empty({n});
    for (int64_t i = 0; i < n; ++i) {
      v.data<float>()[i] = static_cast<float>(rng.normal());
      g.data<float>()[i] = static_cast<float>(rng.normal());
    }
    NamedParams ps = {{"w", v, g}};
    AdamW adamw(ps, AdamOptions{1e-2, 0.9, 0.99, 1e-8, 0.1});
    Sgd sgd(ps, SgdOptions{0.1, 0.9, 0.0, 0.01, true});
    for (int s = 0; s < 3; ++s) {
      adamw.step();
      sgd.step();
    }
    omp_set_num_threads(saved);
    return v;
  };
  const Tensor one = run(1), two = run(2);
  ASSERT_EQ(one.shape(), two.shape());
  EXPECT_EQ(std::memcmp(one.raw_data(), two.raw_data(), n * sizeof(float)), 0);
}

}  // namespace
}  // namespace attn::optim
