// Logs: the named values of one epoch (train_loss, val_acc, lr, ...), in insertion order.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// An ordered map from metric name to value. Insertion order is kept because it is the
/// column order of the history (epoch, train_loss, train_<m>..., lr, val_loss, val_<m>...).
class TORCHFIT_EXPORT Logs {
 public:
  using Item = std::pair<std::string, double>;

  /// Sets `key` to `value`; a new key goes last, an existing one keeps its place.
  void set(std::string_view key, double value);
  /// The value of `key`, or nothing.
  std::optional<double> get(std::string_view key) const;
  /// The value of `key`; throws ConfigError listing the keys there are when it is missing.
  double at(std::string_view key) const;
  bool contains(std::string_view key) const { return get(key).has_value(); }
  void erase(std::string_view key);
  void clear() { items_.clear(); }
  bool empty() const { return items_.empty(); }
  std::size_t size() const { return items_.size(); }
  const std::vector<Item>& items() const { return items_; }
  std::vector<std::string> keys() const;
  /// "val_loss=0.2314 val_acc=0.9213": the form the runner prints.
  std::string to_string(std::string_view separator = " ") const;
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
};

/// Formats a metric value the way torchfit prints them everywhere (up to 6 significant digits).
TORCHFIT_EXPORT std::string format_value(double value);
/// The shortest text that reads back as exactly `value` (0.1 stays "0.1"): for files.
TORCHFIT_EXPORT std::string format_exact(double value);
/// `value` as a JSON number (format_exact), or `null` when it is not finite.
TORCHFIT_EXPORT std::string json_number(double value);
/// `text` as a JSON string: quoted, with quotes, backslashes and control characters escaped.
TORCHFIT_EXPORT std::string json_string(std::string_view text);

}  // namespace torchfit
