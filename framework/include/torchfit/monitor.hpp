// Monitor: "the best value so far" of one logged key. Its one owner: early_stopping,
// model_checkpoint, reduce_lr_on_plateau, event_log, plot and the runner's summary use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>
#include <torch/serialize.h>

#include "torchfit/export.hpp"

namespace torchfit {

class Context;
class Logs;

/// Which way a monitored value should move.
enum class MonitorMode { Auto, Min, Max };

/// Parses "min", "max" or "auto"; throws ConfigError naming `option` otherwise.
TORCHFIT_EXPORT MonitorMode parse_monitor_mode(const std::string& text, const std::string& option);

/// Watches one logged key (val_loss, val_acc, ...): which way is better, the best value and
/// its epoch, and whether a new value improves on it. Like Keras' MonitorCallback.
///
/// A callback that keeps a Monitor returns it from `Callback::monitors()`: before epoch 1,
/// fit() checks that an epoch logs the key and resolves `auto` (from the loss or the metric
/// behind the key), so a key whose direction nothing knows (lr, time, a custom step's value)
/// is a ConfigError naming the key and the option to set, not a guess.
class TORCHFIT_EXPORT Monitor {
 public:
  /// `min_delta`: the smallest change that counts as an improvement, absolute, or relative
  /// to the best (PyTorch's threshold_mode "rel": better than best * (1 -+ min_delta)).
  /// `owner`: the plugin whose options these are ("early_stopping"), named in messages.
  explicit Monitor(std::string key = "val_loss", MonitorMode mode = MonitorMode::Auto, double min_delta = 0.0,
                   std::string owner = {}, bool relative = false);

  const std::string& key() const { return key_; }
  const std::string& owner() const { return owner_; }
  MonitorMode mode() const { return mode_; }

  /// For a callback that skips an epoch whose logs lack the key (a plot of what there is):
  /// fit() then resolves the direction without requiring that an epoch logs the key.
  Monitor& key_may_be_missing(bool may = true) {
    may_be_missing_ = may;
    return *this;
  }
  bool key_may_be_missing() const { return may_be_missing_; }

  /// The key's value in `ctx.logs` (throws ConfigError listing the logged keys when it is
  /// missing); resolves `auto` on first use.
  double current(const Context& ctx) const;

  /// Resolves `auto` from what the fit knows about the key (Context::higher_is_better); throws
  /// ConfigError when nothing knows. Min and max need nothing. Idempotent.
  void resolve(const Context& ctx) const;
  /// The same, given what is known: true for higher-is-better, nothing when unknown.
  void resolve(std::optional<bool> higher_is_better) const;
  bool resolved() const { return higher_.has_value(); }
  /// Whether higher is better; throws std::logic_error while `auto` is unresolved.
  bool higher_is_better() const;
  /// "min" or "max" once resolved.
  std::string mode_name() const { return higher_is_better() ? "max" : "min"; }

  /// Whether `value` beats `reference` by more than min_delta in the right direction. NaN
  /// never improves.
  bool improves(double value, double reference) const;
  /// Offers this epoch's value: when it beats the best so far (any number beats "none yet"),
  /// it becomes the best, with its epoch, and this returns true.
  bool update(double value, int64_t epoch);

  /// Whether a value was recorded (since reset() or in the state loaded).
  bool has_best() const { return has_best_; }
  /// The best value, or the worst possible one (±inf) while has_best() is false.
  double best() const { return has_best_ ? best_ : worst(); }
  /// The epoch of the best value; 0 while has_best() is false.
  int64_t best_epoch() const { return best_epoch_; }
  /// Forgets the best (a new fit).
  void reset();

  /// The 0-based row (of `History::rows()`) whose value is best, as update() would choose it
  /// row after row (the first of equal values; NaN and missing values are skipped); nothing
  /// when no row has one. Needs the direction (min, max, or `auto` resolved).
  std::optional<std::size_t> best_row(const std::vector<Logs>& rows) const;

  /// Saves and restores the best (keys has_best, best, best_epoch; a state without them
  /// leaves the monitor reset).
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  double worst() const;

  std::string key_;
  MonitorMode mode_;
  double min_delta_;
  std::string owner_;
  bool relative_;
  bool may_be_missing_ = false;
  mutable std::optional<bool> higher_;
  bool has_best_ = false;
  double best_ = 0;
  int64_t best_epoch_ = 0;
};

/// Declares a plugin's `monitor` and `mode` options (and `min-delta` when `with_min_delta`),
/// one wording for every plugin: `what` says what the key decides ("the best epoch").
TORCHFIT_EXPORT void add_monitor_options(boost::program_options::options_description& options,
                                         const std::string& what, bool with_min_delta);
/// The Monitor those options describe, for plugin `owner` (min-delta 0 when not declared).
TORCHFIT_EXPORT Monitor monitor_from_options(const boost::program_options::variables_map& options,
                                             const std::string& owner);

}  // namespace torchfit
