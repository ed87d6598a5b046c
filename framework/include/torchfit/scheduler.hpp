// Scheduler: changes the optimizer's learning rate every step or every epoch.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "torchfit/export.hpp"

namespace torchfit {

class Context;

/// A learning-rate schedule. The trainer calls step() after each optimizer step
/// (Interval::Step) or once at the end of each epoch, after validation, with the epoch's
/// logs in the context (Interval::Epoch, so plateau schedules can read val_loss).
class TORCHFIT_EXPORT Scheduler {
 public:
  enum class Interval { Step, Epoch };
  virtual ~Scheduler() = default;
  virtual Interval interval() const { return Interval::Epoch; }
  virtual void step(Context& ctx) = 0;
  virtual void state_dict(torch::serialize::OutputArchive& archive) const {}
  virtual void load_state_dict(torch::serialize::InputArchive& archive) {}
};

/// Adapts one of LibTorch's own schedulers (torch::optim::StepLR, ...).
TORCHFIT_EXPORT std::shared_ptr<Scheduler> wrap_scheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                                                          Scheduler::Interval interval = Scheduler::Interval::Epoch);

/// The learning rate of every parameter group.
TORCHFIT_EXPORT std::vector<double> learning_rates(const torch::optim::Optimizer& optimizer);
/// Sets the learning rate of every parameter group.
TORCHFIT_EXPORT void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace torchfit
