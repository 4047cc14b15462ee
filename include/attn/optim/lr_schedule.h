// Learning-rate schedules: lr(s) is the learning rate for optimizer step s (0-based), the
// value torch's LambdaLR gives when its lambda is the same factor. Use as
//   opt.set_lr(schedule.lr(opt.step_count())); opt.step();
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>

namespace attn::optim {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr(int64_t step) const = 0;
};

class ConstantLr : public LrSchedule {
 public:
  explicit ConstantLr(double lr);
  double lr(int64_t step) const override { return lr_; }

 private:
  double lr_;
};

// Linear warm-up then inverse square root decay ("Attention Is All You Need", §5.3, with the
// peak lr given directly): lr * min((s + 1) / warmup, sqrt(warmup / (s + 1))).
class InverseSqrtLr : public LrSchedule {
 public:
  InverseSqrtLr(double lr, int64_t warmup);  // warmup >= 1
  double lr(int64_t step) const override;

 private:
  double lr_;
  int64_t warmup_;
};

// Linear warm-up over `warmup` steps, then half a cosine from lr down to min_lr at
// step `total` (Loshchilov & Hutter 2017, without restarts); min_lr after that:
//   s < warmup: lr * (s + 1) / warmup
//   else:       min_lr + (lr - min_lr) * (1 + cos(pi * min(1, (s - warmup) / max(1, total - warmup)))) / 2
class CosineLr : public LrSchedule {
 public:
  CosineLr(double lr, int64_t warmup, int64_t total, double min_lr = 0.0);
  double lr(int64_t step) const override;

 private:
  double lr_, min_lr_;
  int64_t warmup_, total_;
};

// From JSON such as {"type": "cosine", "warmup": 100, "total": 10000, "min_lr": 1e-5}
// ("constant" | "inverse_sqrt" | "cosine"); the base lr is passed separately.
std::unique_ptr<LrSchedule> make_lr_schedule(const nlohmann::json& config, double lr);

}  // namespace attn::optim
