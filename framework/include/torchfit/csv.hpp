// Numeric CSV files: read a table of features, write a table of predictions.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// Whether the first row names the columns.
enum class CsvHeader {
  Auto,  ///< yes when any of its cells is not a number
  Yes,
  No,
};

/// What to do with an empty cell (or NA, N/A, NaN, null).
enum class CsvMissing {
  Error,  ///< refuse, naming file, line and column (the default)
  Zero,   ///< fill with 0
  Mean,   ///< fill with the column's mean over this file's rows that have a value
};

/// How to read a numeric CSV file into features and an optional target.
struct TORCHFIT_EXPORT CsvOptions {
  char delimiter = ',';
  CsvHeader header = CsvHeader::Auto;
  char comment = '#';  ///< lines whose first non-blank character is this are skipped; '\0': none
  /// The target column: a name from the header, or a 1-based index ("3"). Empty: no target.
  std::string target;
  /// The feature columns: names or 1-based indices, and ranges of indices ("2-5"), separated by
  /// commas, in the order given. Empty: every column but the target, in file order.
  std::string features;
  CsvMissing missing = CsvMissing::Error;  ///< for feature cells; a missing target is always an error
  std::optional<int64_t> expected_features;  ///< refuse another feature count (the model's input width)
  /// Predict's input: the target column, named by `target`, is left out when the file has one
  /// (its cells are not read, and may be empty) and is no error when it has none. A target given
  /// by index is then always taken to be there (the file has the training file's layout).
  bool ignore_target = false;
};

/// A numeric table read from CSV.
struct TORCHFIT_EXPORT CsvData {
  std::vector<std::string> header;         ///< every column's name; empty when the file has no header
  std::vector<std::string> feature_names;  ///< the selected features (names, or "column N")
  std::string target_name;                 ///< empty without a target
  torch::Tensor features;                  ///< [rows, features], float32
  torch::Tensor targets;                   ///< [rows, 1], float32; undefined without a target
  int64_t filled = 0;                      ///< missing cells filled by the policy
};

/// Reads a CSV file of numbers, streaming it line by line (the text is never held whole).
/// Quoted fields ("a,b", with "" for a quote) are understood. Every problem is a DataError
/// naming the file, the line, the column and the text seen: a cell that is not a number, a
/// row with another number of cells, a missing value under CsvMissing::Error, a target or
/// feature column that does not exist (listing those that do), an empty file, a header
/// without rows.
TORCHFIT_EXPORT CsvData read_csv(const std::filesystem::path& path, const CsvOptions& options = {});
/// The same from a stream; `origin` stands for the file name in messages.
TORCHFIT_EXPORT CsvData read_csv(std::istream& in, const std::string& origin, const CsvOptions& options = {});

/// Parses the text forms of the options ("comma", ";", "\t"...; "auto", "yes", "no";
/// "error", "zero", "mean"). Throws ConfigError naming `option`.
TORCHFIT_EXPORT char parse_csv_delimiter(const std::string& text, const std::string& option);
TORCHFIT_EXPORT CsvHeader parse_csv_header(const std::string& text, const std::string& option);
TORCHFIT_EXPORT CsvMissing parse_csv_missing(const std::string& text, const std::string& option);

/// A numeric table read from CSV (predict's input): every column a feature.
struct CsvTable {
  std::vector<std::string> header;  ///< empty when the file has none
  torch::Tensor values;             ///< [rows, columns], float32
};

/// read_csv with the defaults and no target: every column is a feature; `columns`, when
/// given, is the width required.
TORCHFIT_EXPORT CsvTable read_numeric_csv(const std::filesystem::path& path,
                                          std::optional<int64_t> columns = std::nullopt);
/// The same from a stream; `origin` stands for the file name in messages.
TORCHFIT_EXPORT CsvTable read_numeric_csv(std::istream& in, const std::string& origin,
                                          std::optional<int64_t> columns = std::nullopt);

/// Writes `header` and the rows of `values` ([rows, header.size()]) atomically.
TORCHFIT_EXPORT void write_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                               const torch::Tensor& values);

}  // namespace torchfit
