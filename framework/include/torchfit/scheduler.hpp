// Learning-rate schedules: the one mechanism that sets the optimizer's rate over a run.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "torchfit/callback.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// A learning-rate schedule: a callback that owns the optimizer's rate. A fit runs at most one
/// (fit() refuses a second with a ConfigError naming both: each would undo the other), and runs
/// it before every other callback in each hook, so lr_monitor and the others see the rate it
/// set wherever it stands in the list (so a value it monitors, such as reduce_lr_on_plateau's,
/// is logged by on_validation_end, as the loss and metrics are). Give it in the callbacks, or to the Trainer's
/// constructor. The schedule plugins (step_lr, multistep_lr, cosine_lr, one_cycle_lr,
/// reduce_lr_on_plateau) are Schedules; so is what wrap_scheduler() returns.
class TORCHFIT_EXPORT Schedule : public Callback {
 public:
  /// Epoch: the rate changes between epochs. Step: between optimizer steps.
  enum class Interval { Epoch, Step };
  explicit Schedule(Interval interval = Interval::Epoch);
  ~Schedule() override;
  Interval interval() const { return interval_; }

 private:
  Interval interval_;
};

/// A schedule in closed form, as PyTorch's Python schedulers are: each group's rate is
/// `rate(base, t)`, from its base rate (the optimizer's at the start of the run, kept in the
/// state file so a resume continues the same schedule) and t, the 0-based epoch (set before
/// each epoch) or optimizer step (set before each batch).
class TORCHFIT_EXPORT FormulaSchedule : public Schedule {
 public:
  using Schedule::Schedule;
  void on_fit_begin(Context& ctx) override;
  void on_train_epoch_begin(Context& ctx) override;
  void on_train_batch_begin(Context& ctx) override;
  StateFields state_fields() override { return StateFields().add("base", base_); }

 protected:
  /// The rate of a group whose base rate is `base` at epoch or step `t` (0-based).
  virtual double rate(double base, int64_t t) const = 0;
  const std::vector<double>& base_rates() const { return base_; }

 private:
  void apply(Context& ctx, int64_t t);
  std::vector<double> base_;
};

/// PyTorch's LambdaLR: every group's rate is its base rate times `factor(t)`.
TORCHFIT_EXPORT std::shared_ptr<Schedule> lambda_schedule(std::function<double(int64_t t)> factor,
                                                          Schedule::Interval interval = Schedule::Interval::Epoch);

/// Adapts one of LibTorch's own schedulers (torch::optim::StepLR, ...): stepped after each
/// epoch's validation (Interval::Epoch, LibTorch's convention) or after each optimizer step;
/// its step count is saved with the run, so a resume continues it.
TORCHFIT_EXPORT std::shared_ptr<Schedule> wrap_scheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                                                         Schedule::Interval interval = Schedule::Interval::Epoch);

/// The learning rate of every parameter group.
TORCHFIT_EXPORT std::vector<double> learning_rates(const torch::optim::Optimizer& optimizer);
/// Sets the learning rate of every parameter group.
TORCHFIT_EXPORT void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace torchfit
