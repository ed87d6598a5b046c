// Learning-rate schedules as callback plugins: step_lr, multistep_lr, cosine_lr (with linear
// warm-up), one_cycle_lr and reduce_lr_on_plateau. Their values follow PyTorch's Python
// schedulers (torch.optim.lr_scheduler), computed in closed form from the base rates.
//
// One source, five plugins: TORCHFIT_SCHEDULER (set by plugins/CMakeLists.txt) picks the one
// this library exports.
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/monitor.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/scheduler.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace {

namespace po = boost::program_options;
using torchfit::ConfigError;
using torchfit::Context;

// The batches per epoch a per-step schedule's length is made from: a stream of unknown length
// has none to offer, so the option that sets the length must be given.
int64_t batches_per_epoch(const Context& ctx, const char* option) {
  if (ctx.num_batches < 0) {
    throw ConfigError(std::string("the training data is a stream of unknown length, so the schedule's length cannot be "
                                  "worked out from it; set ") + option + " (in optimizer steps)");
  }
  return ctx.num_batches;
}

using Interval = torchfit::Schedule::Interval;
Interval interval_of(bool per_step) { return per_step ? Interval::Step : Interval::Epoch; }

// StepLR: base * gamma^(t // step_size).
class StepLr final : public torchfit::FormulaSchedule {
 public:
  StepLr(bool per_step, int64_t step_size, double gamma)
      : FormulaSchedule(interval_of(per_step)), step_size_(step_size), gamma_(gamma) {}

 protected:
  double rate(double base, int64_t t) const override {
    return base * std::pow(gamma_, static_cast<double>(t / step_size_));
  }

 private:
  int64_t step_size_;
  double gamma_;
};

// MultiStepLR: base * gamma^(number of milestones <= t).
class MultiStepLr final : public torchfit::FormulaSchedule {
 public:
  MultiStepLr(bool per_step, std::vector<int64_t> milestones, double gamma)
      : FormulaSchedule(interval_of(per_step)), milestones_(std::move(milestones)), gamma_(gamma) {}

 protected:
  double rate(double base, int64_t t) const override {
    const auto passed = std::count_if(milestones_.begin(), milestones_.end(), [t](int64_t m) { return m <= t; });
    return base * std::pow(gamma_, static_cast<double>(passed));
  }

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

// LinearLR warm-up for `warmup` epochs/steps (factor from start_factor to 1), then
// CosineAnnealingLR over t_max (as SequentialLR chains them): eta_min + (base - eta_min) *
// (1 + cos(pi * t' / t_max)) / 2 with t' = t - warmup. After t_max the rate stays at eta_min.
class CosineLr final : public torchfit::FormulaSchedule {
 public:
  CosineLr(bool per_step, int64_t t_max, double eta_min, int64_t warmup, double start_factor)
      : FormulaSchedule(interval_of(per_step)), t_max_(t_max), eta_min_(eta_min), warmup_(warmup), start_factor_(start_factor) {}

  void on_fit_begin(Context& ctx) override {
    FormulaSchedule::on_fit_begin(ctx);
    if (t_max_ <= 0 && interval() == Interval::Epoch) resolved_t_max_ = std::max<int64_t>(1, ctx.epochs - warmup_);
  }
  void on_train_epoch_begin(Context& ctx) override {
    if (t_max_ <= 0 && interval() == Interval::Step && resolved_t_max_ == 0) {
      resolved_t_max_ = std::max<int64_t>(1, ctx.epochs * batches_per_epoch(ctx, "cosine_lr.t-max") - warmup_);
    }
    FormulaSchedule::on_train_epoch_begin(ctx);
  }

 protected:
  double rate(double base, int64_t t) const override {
    if (t < warmup_) {
      return base * (start_factor_ + (1.0 - start_factor_) * static_cast<double>(t) / static_cast<double>(warmup_));
    }
    const int64_t t_max = t_max_ > 0 ? t_max_ : resolved_t_max_;
    const double progress = std::min<double>(static_cast<double>(t - warmup_), static_cast<double>(t_max));
    return eta_min_ + (base - eta_min_) * (1.0 + std::cos(M_PI * progress / static_cast<double>(t_max))) / 2.0;
  }

 private:
  int64_t t_max_;
  double eta_min_;
  int64_t warmup_;
  double start_factor_;
  int64_t resolved_t_max_ = 0;
};

// OneCycleLR (two phases, cosine annealing), stepped after every optimizer step: from
// max_lr / div_factor up to max_lr over pct_start of the steps, then down to
// max_lr / div_factor / final_div_factor at the last step.
class OneCycleLr final : public torchfit::FormulaSchedule {
 public:
  OneCycleLr(double max_lr, int64_t total_steps, double pct_start, double div_factor, double final_div_factor)
      : FormulaSchedule(Interval::Step),
        max_lr_(max_lr),
        total_steps_(total_steps),
        pct_start_(pct_start),
        div_factor_(div_factor),
        final_div_factor_(final_div_factor) {}

  void on_train_epoch_begin(Context& ctx) override {
    if (total_steps_ <= 0 && resolved_total_ == 0) {
      resolved_total_ = ctx.epochs * batches_per_epoch(ctx, "one_cycle_lr.total-steps");
    }
    FormulaSchedule::on_train_epoch_begin(ctx);
  }

 protected:
  double rate(double base, int64_t t) const override {
    const double peak = max_lr_ > 0 ? max_lr_ : base;
    const double initial = peak / div_factor_;
    const double minimum = initial / final_div_factor_;
    const double total = static_cast<double>(total_steps_ > 0 ? total_steps_ : resolved_total_);
    const double step = std::min(static_cast<double>(t), total - 1);
    const double end_up = pct_start_ * total - 1;
    auto anneal = [](double start, double end, double pct) { return end + (start - end) / 2.0 * (std::cos(M_PI * pct) + 1); };
    if (step <= end_up) return anneal(initial, peak, step / end_up);
    return anneal(peak, minimum, (step - end_up) / (total - 1 - end_up));
  }

 private:
  double max_lr_;
  int64_t total_steps_;
  double pct_start_, div_factor_, final_div_factor_;
  int64_t resolved_total_ = 0;
};

// ReduceLROnPlateau: after `patience` epochs without improvement of the monitored value
// (relative or absolute threshold), multiply every rate by `factor`, not below min_lr; then
// wait `cooldown` epochs before counting again.
class ReduceLrOnPlateau final : public torchfit::Schedule {
 public:
  struct Settings {
    torchfit::Monitor monitor;  // its min-delta: PyTorch's threshold, relative or absolute
    double factor = 0.1;
    int64_t patience = 10;
    int64_t cooldown = 0;
    double min_lr = 0;
    double eps = 1e-8;
  };
  explicit ReduceLrOnPlateau(Settings s) : Schedule(Interval::Epoch), s_(std::move(s)), monitor_(s_.monitor) {}

  std::vector<const torchfit::Monitor*> monitors() const override { return {&monitor_}; }

  void on_fit_begin(Context&) override {
    monitor_.reset();
    bad_epochs_ = cooldown_counter_ = 0;
  }

  void on_epoch_end(Context& ctx) override {
    if (monitor_.update(monitor_.current(ctx), ctx.epoch)) {
      bad_epochs_ = 0;
    } else {
      ++bad_epochs_;
    }
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      bad_epochs_ = 0;
    }
    if (bad_epochs_ > s_.patience) {
      auto rates = torchfit::learning_rates(ctx.optimizer());
      auto& groups = ctx.optimizer().param_groups();
      for (size_t g = 0; g < groups.size(); ++g) {
        const double lowered = std::max(rates[g] * s_.factor, s_.min_lr);
        if (rates[g] - lowered > s_.eps) {
          groups[g].options().set_lr(lowered);
          torchfit::logger("reduce_lr_on_plateau")
              ->info("epoch {}: {} did not improve for {} epochs; lr{} lowered to {}", ctx.epoch, monitor_.key(),
                     bad_epochs_, g ? "_" + std::to_string(g) : std::string(), torchfit::format_value(lowered));
        }
      }
      cooldown_counter_ = s_.cooldown;
      bad_epochs_ = 0;
    }
  }

  torchfit::StateFields state_fields() override {
    return torchfit::StateFields().add(monitor_).add("bad_epochs", bad_epochs_).add("cooldown_counter", cooldown_counter_);
  }

 private:
  Settings s_;
  torchfit::Monitor monitor_;
  int64_t bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
};

bool per_step(const torchfit::PluginOptions& o) { return o["interval"].as<std::string>() == "step"; }

void add_interval(po::options_description& d) {
  d.add_options()("interval", torchfit::one_of({"epoch", "step"})->default_value("epoch"),
                  "epoch: t counts epochs (the rate changes between epochs); step: t counts optimizer steps");
}

#define STR2(x) #x
#define STR(x) STR2(x)
#define TORCHFIT_SCHEDULER_NAME STR(TORCHFIT_SCHEDULER)

torchfit::PluginInfo describe() {
  const std::string name = TORCHFIT_SCHEDULER_NAME;
  if (name == "step_lr") {
    torchfit::PluginInfo info(torchfit::PluginKind::Callback, name, "1.0.0",
                              "LR schedule: multiply the rate by gamma every step-size epochs (PyTorch's StepLR)");
    info.options->add_options()                                                                      //
        ("step-size", torchfit::number<int64_t>(torchfit::NumberRange::positive())->default_value(10), "epochs (or steps) between decays")  //
        ("gamma", torchfit::number<double>(torchfit::NumberRange::positive())->default_value(0.1, "0.1"), "multiplier at each decay");
    add_interval(*info.options);
    return info;
  }
  if (name == "multistep_lr") {
    torchfit::PluginInfo info(torchfit::PluginKind::Callback, name, "1.0.0",
                              "LR schedule: multiply the rate by gamma at each milestone (PyTorch's MultiStepLR)");
    info.options->add_options()                                                                              //
        ("milestones", po::value<std::string>()->default_value("30,80"), "comma-separated epochs (0-based)")  //
        ("gamma", torchfit::number<double>(torchfit::NumberRange::positive())->default_value(0.1, "0.1"), "multiplier at each milestone");
    add_interval(*info.options);
    return info;
  }
  if (name == "cosine_lr") {
    torchfit::PluginInfo info(torchfit::PluginKind::Callback, name, "1.0.0",
                              "LR schedule: linear warm-up, then cosine annealing (PyTorch's LinearLR + CosineAnnealingLR)");
    info.options->add_options()  //
        ("t-max", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: the rest of the run)"))->default_value(0),
         "length of the cosine, in epochs (or steps); 0: the rest of the run after the warm-up")  //
        ("eta-min", torchfit::number<double>(torchfit::NumberRange::at_least(0))->default_value(0.0), "lowest rate")                       //
        ("warmup", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0))->default_value(0), "warm-up epochs (or steps)")           //
        ("warmup-start-factor", torchfit::number<double>(torchfit::NumberRange::between(0, 1, true, false))->default_value(1.0 / 3, "0.333333"),
         "the warm-up starts at this fraction of the base rate");
    add_interval(*info.options);
    return info;
  }
  if (name == "one_cycle_lr") {
    torchfit::PluginInfo info(torchfit::PluginKind::Callback, name, "1.0.0",
                              "LR schedule: one cycle up to max-lr and down, every step (PyTorch's OneCycleLR)");
    info.options->add_options()                                                                             //
        ("max-lr", torchfit::number<double>(torchfit::NumberRange::at_least(0, "(0: automatic)"))->default_value(0.0), "peak rate; 0: the optimizer's rate")          //
        ("total-steps", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: automatic)"))->default_value(0), "0: epochs x batches per epoch")            //
        ("pct-start", torchfit::number<double>(torchfit::NumberRange::between(0, 1, true, true))->default_value(0.3, "0.3"), "fraction of the steps going up")    //
        ("div-factor", torchfit::number<double>(torchfit::NumberRange::positive())->default_value(25.0), "initial rate = max-lr / div-factor")     //
        ("final-div-factor", torchfit::number<double>(torchfit::NumberRange::positive())->default_value(1e4, "10000"),
         "final rate = initial rate / final-div-factor");
    return info;
  }
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "reduce_lr_on_plateau", "1.0.0",
                            "LR schedule: lower the rate when a monitored value stops improving (PyTorch's ReduceLROnPlateau)");
  torchfit::add_monitor_options(*info.options, "a plateau", false);
  info.options->add_options()                                                                                 //
      ("factor", torchfit::number<double>(torchfit::NumberRange::between(0, 1, true, true))->default_value(0.1, "0.1"), "multiplier when the value plateaus")       //
      ("patience", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0))->default_value(10), "epochs without improvement before lowering")    //
      ("threshold", torchfit::number<double>(torchfit::NumberRange::at_least(0))->default_value(1e-4, "0.0001"), "smallest improvement that counts")  //
      ("threshold-mode", torchfit::one_of({"rel", "abs"})->default_value("rel"), "rel (relative to the best) or abs")  //
      ("cooldown", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0))->default_value(0), "epochs to wait after lowering before counting again")  //
      ("min-lr", torchfit::number<double>(torchfit::NumberRange::at_least(0))->default_value(0.0), "the rate never goes below this");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  const std::string name = TORCHFIT_SCHEDULER_NAME;
  if (name == "step_lr") {
    return std::make_shared<StepLr>(per_step(o), o["step-size"].as<int64_t>(), o["gamma"].as<double>());
  }
  if (name == "multistep_lr") {
    std::vector<int64_t> milestones;
    std::stringstream in(o["milestones"].as<std::string>());
    for (std::string item; std::getline(in, item, ',');) {
      try {
        size_t used = 0;
        milestones.push_back(std::stoll(item, &used));
        if (used != item.size() || milestones.back() < 0) throw std::invalid_argument(item);
      } catch (const std::exception&) {
        throw ConfigError("multistep_lr.milestones must be comma-separated epochs like 30,80, got '" +
                          o["milestones"].as<std::string>() + "'");
      }
    }
    return std::make_shared<MultiStepLr>(per_step(o), milestones, o["gamma"].as<double>());
  }
  if (name == "cosine_lr") {
    const auto warmup = o["warmup"].as<int64_t>();
    const auto start = o["warmup-start-factor"].as<double>();
    return std::make_shared<CosineLr>(per_step(o), o["t-max"].as<int64_t>(), o["eta-min"].as<double>(),
                                      warmup, start);
  }
  if (name == "one_cycle_lr") {
    const auto pct = o["pct-start"].as<double>();
    return std::make_shared<OneCycleLr>(o["max-lr"].as<double>(), o["total-steps"].as<int64_t>(), pct,
                                        o["div-factor"].as<double>(), o["final-div-factor"].as<double>());
  }
  ReduceLrOnPlateau::Settings s;
  const auto mode = o["threshold-mode"].as<std::string>();
  const auto base = torchfit::monitor_from_options(o, "reduce_lr_on_plateau");
  s.monitor = torchfit::Monitor(base.key(), base.mode(), o["threshold"].as<double>(), base.owner(), mode == "rel");
  s.factor = o["factor"].as<double>();
  s.patience = o["patience"].as<int64_t>();
  s.cooldown = o["cooldown"].as<int64_t>();
  s.min_lr = o["min-lr"].as<double>();
  return std::make_shared<ReduceLrOnPlateau>(s);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
