// Monitor: the best value so far of a logged key, and which way is better.
#include "torchfit/monitor.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "torchfit/callback.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/option_values.hpp"

namespace torchfit {

namespace po = boost::program_options;

MonitorMode parse_monitor_mode(const std::string& text, const std::string& option) {
  if (text == "min") return MonitorMode::Min;
  if (text == "max") return MonitorMode::Max;
  if (text == "auto") return MonitorMode::Auto;
  throw ConfigError(option + " must be min, max or auto, got '" + text + "'");
}

Monitor::Monitor(std::string key, MonitorMode mode, double min_delta, std::string owner, bool relative)
    : key_(std::move(key)),
      mode_(mode),
      min_delta_(std::fabs(min_delta)),
      owner_(std::move(owner)),
      relative_(relative) {
  if (mode_ != MonitorMode::Auto) higher_ = mode_ == MonitorMode::Max;
  reset();
}

double Monitor::current(const Context& ctx) const {
  auto v = ctx.logs.get(key_);
  if (!v) {
    ctx.logs.at(key_);  // throws ConfigError listing the keys that were logged
  }
  resolve(ctx);
  return *v;
}

void Monitor::resolve(const Context& ctx) const {
  if (!higher_) resolve(ctx.higher_is_better(key_));
}

void Monitor::resolve(std::optional<bool> higher_is_better) const {
  if (higher_) return;
  if (!higher_is_better) {
    const std::string option = owner_.empty() ? "its mode" : "--" + owner_ + ".mode";
    throw ConfigError((owner_.empty() ? "a monitor" : owner_) + " watches '" + key_ +
                      "' with mode auto, but nothing in this fit says whether a higher or a lower " + key_ +
                      " is better (the loss and the metrics say it for their values): set " + option +
                      " to min or max");
  }
  higher_ = *higher_is_better;
}

bool Monitor::higher_is_better() const {
  if (!higher_) throw std::logic_error("torchfit::Monitor: the direction of '" + key_ + "' is not resolved yet");
  return *higher_;
}

bool Monitor::improves(double value, double reference) const {
  if (std::isnan(value)) return false;
  if (relative_ && std::isfinite(reference)) {
    // PyTorch's ReduceLROnPlateau, threshold_mode "rel".
    return higher_is_better() ? value > reference * (1 + min_delta_) : value < reference * (1 - min_delta_);
  }
  return higher_is_better() ? value > reference + min_delta_ : value < reference - min_delta_;
}

bool Monitor::update(double value, int64_t epoch) {
  if (!improves(value, best())) return false;  // Keras: the first value is compared with the worst
  best_ = value;
  best_epoch_ = epoch;
  has_best_ = true;
  return true;
}

void Monitor::reset() {
  has_best_ = false;
  best_ = 0;
  best_epoch_ = 0;
}

double Monitor::worst() const {
  return higher_is_better() ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

std::optional<std::size_t> Monitor::best_row(const std::vector<Logs>& rows) const {
  Monitor replay(*this);
  replay.reset();
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (auto v = rows[i].get(key_); v && replay.update(*v, static_cast<int64_t>(i) + 1)) best = i;
  }
  return best;
}

void Monitor::save(torch::serialize::OutputArchive& archive) const {
  archive.write("has_best", c10::IValue(has_best_));
  archive.write("best", c10::IValue(best_));
  archive.write("best_epoch", c10::IValue(best_epoch_));
}

void Monitor::load(torch::serialize::InputArchive& archive) {
  reset();
  c10::IValue has, best, epoch;
  if (!archive.try_read("has_best", has) || !has.toBool() || !archive.try_read("best", best)) return;
  has_best_ = true;
  best_ = best.toDouble();
  if (archive.try_read("best_epoch", epoch)) best_epoch_ = epoch.toInt();
}

void add_monitor_options(po::options_description& options, const std::string& what, bool with_min_delta) {
  options.add_options()                                                                          //
      ("monitor", po::value<std::string>()->default_value("val_loss"), ("logged value that decides " + what).c_str())  //
      ("mode", one_of({"min", "max", "auto"})->default_value("auto"),
       "min, max, or auto: from the loss or the metric behind the value (an error for a value neither logs)");
  if (with_min_delta) {
    options.add_options()("min-delta", number<double>(NumberRange::at_least(0))->default_value(0.0),
                          "smallest change that counts as an improvement");
  }
}

Monitor monitor_from_options(const po::variables_map& options, const std::string& owner) {
  const double min_delta = options.count("min-delta") ? options["min-delta"].as<double>() : 0.0;
  return Monitor(options["monitor"].as<std::string>(),
                 parse_monitor_mode(options["mode"].as<std::string>(), owner + ".mode"), min_delta, owner);
}

}  // namespace torchfit
