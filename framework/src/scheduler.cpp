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

// LibTorch keeps a scheduler's step count protected and has no state_dict: a class derived
// from it may name the member, and the pointer to it then reads any scheduler's count.
struct StepCount : torch::optim::LRScheduler {
  static unsigned torch::optim::LRScheduler::*member() { return &StepCount::step_count_; }
};

// The optimizer's rates are in the optimizer's own state; what the schedule adds is how many
// steps it took (StepLR decays when that count reaches a multiple of its step size), saved so a
// resumed run goes on with the same schedule instead of starting it again.
class LibTorchScheduler : public Scheduler {
 public:
  LibTorchScheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler, Interval interval)
      : scheduler_(std::move(scheduler)), interval_(interval) {}
  Interval interval() const override { return interval_; }
  void step(Context&) override { scheduler_->step(); }
  void state_dict(torch::serialize::OutputArchive& archive) const override {
    archive.write("step_count", c10::IValue(static_cast<int64_t>((*scheduler_).*StepCount::member())));
  }
  void load_state_dict(torch::serialize::InputArchive& archive) override {
    c10::IValue v;
    if (archive.try_read("step_count", v) && v.isInt()) (*scheduler_).*StepCount::member() = static_cast<unsigned>(v.toInt());
  }

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
