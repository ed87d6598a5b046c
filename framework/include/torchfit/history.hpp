// History: one row per epoch (epoch, train_loss, train_<m>..., lr, val_loss, val_<m>..., time).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/logs.hpp"

namespace torchfit {

/// What fit() returns, like torchkeras' dfhistory DataFrame. Columns appear in the order
/// they were first logged.
class TORCHFIT_EXPORT History {
 public:
  void append(Logs row) { rows_.push_back(std::move(row)); }
  const std::vector<Logs>& rows() const { return rows_; }
  std::size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  const Logs& back() const { return rows_.back(); }
  const Logs& operator[](std::size_t i) const { return rows_.at(i); }
  void clear() { rows_.clear(); }

  /// Why the fit that made this history stopped: "completed 100 epochs", or the reason a
  /// callback gave to request_stop().
  const std::string& stop_reason() const { return stop_reason_; }
  void set_stop_reason(std::string reason) { stop_reason_ = std::move(reason); }

  /// Every column name, in first-logged order.
  std::vector<std::string> columns() const;
  /// One column's values (NaN where a row lacks it). Throws ConfigError for an unknown column.
  std::vector<double> column(const std::string& name) const;

  /// Writes a CSV file (header line, then one line per epoch) atomically.
  void to_csv(const std::filesystem::path& path) const;
  /// Writes `[{"epoch": 1, "train_loss": ...}, ...]` atomically.
  void to_json(const std::filesystem::path& path) const;
  std::string to_csv_string() const;
  std::string to_json_string() const;
  /// The last `n` rows as an aligned table, like a DataFrame's tail.
  std::string tail(std::size_t n = 5) const;

 private:
  std::vector<Logs> rows_;
  std::string stop_reason_;
};

}  // namespace torchfit
