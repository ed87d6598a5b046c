// Learning-rate helpers and the adapter for LibTorch's own schedulers.
#include "torchfit/scheduler.hpp"

#include "torchfit/callback.hpp"

namespace torchfit {

std::vector<double> learning_rates(const torch::optim::Optimizer& optimizer) {
  std::vector<double> out;
  for (const auto& group : optimizer.param_groups()) {
    out.push_back(group.options().get_lr());
  }
  return out;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
  }
}

namespace {

class LibTorchScheduler : public Scheduler {
 public:
  LibTorchScheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler, Interval interval)
      : scheduler_(std::move(scheduler)), interval_(interval) {}
  Interval interval() const override { return interval_; }
  void step(Context&) override { scheduler_->step(); }

 private:
  std::shared_ptr<torch::optim::LRScheduler> scheduler_;
  Interval interval_;
};

}  // namespace

std::shared_ptr<Scheduler> wrap_scheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                                          Scheduler::Interval interval) {
  return std::make_shared<LibTorchScheduler>(std::move(scheduler), interval);
}

}  // namespace torchfit
