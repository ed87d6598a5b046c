// Monitor: comparisons of a logged value against the best so far.
#include "torchfit/monitor.hpp"

#include <cmath>
#include <limits>

#include "torchfit/errors.hpp"

namespace torchfit {

MonitorMode parse_monitor_mode(const std::string& text, const std::string& option) {
  if (text == "min") return MonitorMode::Min;
  if (text == "max") return MonitorMode::Max;
  if (text == "auto") return MonitorMode::Auto;
  throw ConfigError(option + " must be min, max or auto, got '" + text + "'");
}

double Monitor::current(const Context& ctx) const {
  auto v = ctx.logs.get(key_);
  if (!v) {
    ctx.logs.at(key_);  // throws ConfigError listing the keys that were logged
  }
  return *v;
}

bool Monitor::higher_is_better(const Context& ctx) {
  if (!higher_) {
    if (mode_ != MonitorMode::Auto) {
      higher_ = mode_ == MonitorMode::Max;
    } else if (auto known = ctx.higher_is_better(key_)) {
      higher_ = *known;
    } else {
      higher_ = false;
      for (const char* word : {"acc", "auc", "f1", "precision", "recall", "r2"}) {
        higher_ = *higher_ || key_.find(word) != std::string::npos;
      }
    }
  }
  return *higher_;
}

bool Monitor::improves(double value, double reference) const {
  if (std::isnan(value)) {
    return false;
  }
  const bool higher = higher_.value_or(mode_ == MonitorMode::Max);
  return higher ? value > reference + min_delta_ : value < reference - min_delta_;
}

double Monitor::worst() const {
  const bool higher = higher_.value_or(mode_ == MonitorMode::Max);
  return higher ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

std::string Monitor::mode_name() const { return higher_.value_or(mode_ == MonitorMode::Max) ? "max" : "min"; }

}  // namespace torchfit
