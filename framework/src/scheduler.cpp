// Learning-rate schedules: the closed-form base, LambdaLR, the adapter for LibTorch's own.
#include "torchfit/scheduler.hpp"

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

// Defined here, so that the class's type information lives in libtorchfit alone: fit() finds
// the schedules among callbacks from plugin libraries by dynamic_cast.
Schedule::Schedule(Interval interval) : interval_(interval) { set_name("schedule"); }
Schedule::~Schedule() = default;

// The base rates are the optimizer's at the first fit; a resume brings them back from the
// state (loaded after on_fit_begin), as the schedule is a function of them and of t.
void FormulaSchedule::on_fit_begin(Context& ctx) { base_ = learning_rates(ctx.optimizer()); }

void FormulaSchedule::on_train_epoch_begin(Context& ctx) {
  if (interval() == Interval::Epoch) apply(ctx, ctx.epoch - 1);
}

void FormulaSchedule::on_train_batch_begin(Context& ctx) {
  if (interval() == Interval::Step) apply(ctx, ctx.global_step);
}

void FormulaSchedule::apply(Context& ctx, int64_t t) {
  auto& groups = ctx.optimizer().param_groups();
  for (size_t g = 0; g < groups.size() && g < base_.size(); ++g) groups[g].options().set_lr(rate(base_[g], t));
}

namespace {

class LambdaSchedule final : public FormulaSchedule {
 public:
  LambdaSchedule(std::function<double(int64_t)> factor, Interval interval)
      : FormulaSchedule(interval), factor_(std::move(factor)) {
    set_name("lambda_schedule");
  }

 protected:
  double rate(double base, int64_t t) const override { return base * factor_(t); }

 private:
  std::function<double(int64_t)> factor_;
};

// LibTorch keeps a scheduler's step count protected and has no state_dict: a class derived
// from it may name the member, and the pointer to it then reads any scheduler's count.
struct StepCount : torch::optim::LRScheduler {
  static unsigned torch::optim::LRScheduler::*member() { return &StepCount::step_count_; }
};

// The optimizer's rates are in the optimizer's own state; what the schedule adds is how many
// steps it took (StepLR decays when that count reaches a multiple of its step size), saved so a
// resumed run goes on with the same schedule instead of starting it again.
class LibTorchSchedule final : public Schedule {
 public:
  LibTorchSchedule(std::shared_ptr<torch::optim::LRScheduler> scheduler, Interval interval)
      : Schedule(interval), scheduler_(std::move(scheduler)) {
    set_name("libtorch_scheduler");
  }
  void on_fit_begin(Context& ctx) override { last_step_ = ctx.global_step; }
  // After the optimizer step (the trainer counts it before this hook); a skipped batch took none.
  void on_train_batch_end(Context& ctx) override {
    if (interval() == Interval::Step && ctx.global_step != last_step_) {
      last_step_ = ctx.global_step;
      scheduler_->step();
    }
  }
  void on_epoch_end(Context& ctx) override {
    if (interval() == Interval::Epoch) scheduler_->step();
  }
  void state_dict(torch::serialize::OutputArchive& archive) const override {
    archive.write("step_count", c10::IValue(static_cast<int64_t>((*scheduler_).*StepCount::member())));
  }
  void load_state_dict(torch::serialize::InputArchive& archive) override {
    c10::IValue v;
    if (archive.try_read("step_count", v) && v.isInt()) (*scheduler_).*StepCount::member() = static_cast<unsigned>(v.toInt());
  }

 private:
  std::shared_ptr<torch::optim::LRScheduler> scheduler_;
  int64_t last_step_ = 0;
};

}  // namespace

std::shared_ptr<Schedule> lambda_schedule(std::function<double(int64_t)> factor, Schedule::Interval interval) {
  return std::make_shared<LambdaSchedule>(std::move(factor), interval);
}

std::shared_ptr<Schedule> wrap_scheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                                         Schedule::Interval interval) {
  return std::make_shared<LibTorchSchedule>(std::move(scheduler), interval);
}

}  // namespace torchfit
