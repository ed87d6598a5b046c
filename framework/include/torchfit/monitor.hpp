// Monitor: "is this value better than that one" for a logged key, shared by callbacks.
#pragma once

#include <optional>
#include <string>

#include "torchfit/callback.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// Which way a monitored value should move.
enum class MonitorMode { Auto, Min, Max };

/// Parses "min", "max" or "auto"; throws ConfigError naming `option` otherwise.
TORCHFIT_EXPORT MonitorMode parse_monitor_mode(const std::string& text, const std::string& option);

/// Watches one logged key (val_loss, val_acc, ...) and says when it improved.
class TORCHFIT_EXPORT Monitor {
 public:
  Monitor(std::string key, MonitorMode mode, double min_delta = 0.0)
      : key_(std::move(key)), mode_(mode), min_delta_(min_delta < 0 ? -min_delta : min_delta) {}

  const std::string& key() const { return key_; }
  /// The value in `ctx.logs`; throws ConfigError listing the logged keys when it is missing.
  double current(const Context& ctx) const;
  /// Resolves `auto` from the metric behind the key (or its name: acc, auc, f1, precision,
  /// recall and r2 are better higher; anything else lower).
  bool higher_is_better(const Context& ctx);
  /// Whether `value` beats `reference` by more than min_delta in the right direction.
  bool improves(double value, double reference) const;
  /// The worst possible value (so anything beats it).
  double worst() const;
  /// "min" or "max" once resolved.
  std::string mode_name() const;

 private:
  std::string key_;
  MonitorMode mode_;
  double min_delta_;
  std::optional<bool> higher_;
};

}  // namespace torchfit
