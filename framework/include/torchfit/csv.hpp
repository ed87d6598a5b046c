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

/// A numeric table read from CSV.
struct CsvTable {
  std::vector<std::string> header;  ///< empty when the file has none
  torch::Tensor values;             ///< [rows, columns], float32
};

/// Reads a comma-separated file of numbers. The first line is a header when any of its cells
/// is not a number. Blank lines and lines starting with '#' are skipped. Throws DataError
/// with file, line and column for a cell that is not a number, a row of the wrong width
/// (`columns`, when given, is the width required), or a file without data rows.
TORCHFIT_EXPORT CsvTable read_numeric_csv(const std::filesystem::path& path,
                                          std::optional<int64_t> columns = std::nullopt);
/// The same from a stream; `origin` stands for the file name in messages.
TORCHFIT_EXPORT CsvTable read_numeric_csv(std::istream& in, const std::string& origin,
                                          std::optional<int64_t> columns = std::nullopt);

/// Writes `header` and the rows of `values` ([rows, header.size()]) atomically.
TORCHFIT_EXPORT void write_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                               const torch::Tensor& values);

}  // namespace torchfit
