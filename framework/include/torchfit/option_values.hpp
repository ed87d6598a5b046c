// Option values that are lists: "64, 32" (layer widths, channel counts), "0.5,0.5,0.5" (one per channel).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// The comma-separated items of `text`, each trimmed of spaces and tabs; blank items are kept
/// (as ""), so a caller can refuse "1,,2".
TORCHFIT_EXPORT std::vector<std::string> split_list(const std::string& text);
/// The whole numbers of `text` ("64, 32"; blank items skipped), or nothing when an item is not a
/// whole number in [min, max]: the caller's message says what the option takes.
TORCHFIT_EXPORT std::optional<std::vector<int64_t>> parse_int_list(const std::string& text, int64_t min, int64_t max);
/// The finite numbers of `text` ("0.5, 0.25"), or nothing when an item is blank or not one.
TORCHFIT_EXPORT std::optional<std::vector<double>> parse_number_list(const std::string& text);

}  // namespace torchfit
