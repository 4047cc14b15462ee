#include "attn/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "attn/core/error.h"

namespace attn::optim {

namespace {
void check_lr(double lr, const char* op) {
  ATTN_CHECK(std::isfinite(lr) && lr >= 0, op, ": lr must be finite and >= 0, got ", lr);
}
}  // namespace

ConstantLr::ConstantLr(double lr) : lr_(lr) { check_lr(lr, "ConstantLr"); }

InverseSqrtLr::InverseSqrtLr(double lr, int64_t warmup) : lr_(lr), warmup_(warmup) {
  check_lr(lr, "InverseSqrtLr");
  ATTN_CHECK(warmup >= 1, "InverseSqrtLr: warmup must be >= 1 step, got ", warmup);
}

double InverseSqrtLr::lr(int64_t step) const {
  const double s1 = static_cast<double>(std::max<int64_t>(step, 0) + 1);
  const double w = static_cast<double>(warmup_);
  return lr_ * std::min(s1 / w, std::sqrt(w / s1));
}

CosineLr::CosineLr(double lr, int64_t warmup, int64_t total, double min_lr)
    : lr_(lr), min_lr_(min_lr), warmup_(warmup), total_(total) {
  check_lr(lr, "CosineLr");
  ATTN_CHECK(min_lr >= 0 && min_lr <= lr, "CosineLr: min_lr must be in [0, lr = ", lr, "], got ", min_lr);
  ATTN_CHECK(warmup >= 0, "CosineLr: warmup must be >= 0, got ", warmup);
  ATTN_CHECK(total >= warmup, "CosineLr: total steps ", total, " must be >= warmup ", warmup);
}

double CosineLr::lr(int64_t step) const {
  step = std::max<int64_t>(step, 0);
  if (step < warmup_) return lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  const double progress = std::min(
      1.0, static_cast<double>(step - warmup_) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_)));
  return min_lr_ + (lr_ - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

std::unique_ptr<LrSchedule> make_lr_schedule(const nlohmann::json& config, double lr) {
  ATTN_CHECK(config.is_object() && config.contains("type") && config["type"].is_string(),
             "make_lr_schedule: config needs a \"type\" string, got ", config.dump());
  const std::string type = config["type"].get<std::string>();
  try {
    if (type == "constant") return std::make_unique<ConstantLr>(lr);
    if (type == "inverse_sqrt") return std::make_unique<InverseSqrtLr>(lr, config.at("warmup").get<int64_t>());
    if (type == "cosine")
      return std::make_unique<CosineLr>(lr, config.value("warmup", int64_t{0}), config.at("total").get<int64_t>(),
                                        config.value("min_lr", 0.0));
  } catch (const nlohmann::json::exception& e) {
    fail("make_lr_schedule: bad ", type, " config ", config.dump(), ": ", e.what());
  }
  fail("make_lr_schedule: unknown schedule type '", type, "' (constant, inverse_sqrt, cosine)");
}

}  // namespace attn::optim
