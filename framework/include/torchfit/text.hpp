// Text helpers for messages: the closest name to a typo, a tensor shape as text.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// The name in `names` closest to `typo` (edit distance at most a third of its length, and at
/// least 2), or "" when none is close: the "did you mean ...?" of every message.
TORCHFIT_EXPORT std::string closest_name(const std::string& typo, const std::vector<std::string>& names);

/// "[64, 3, 32, 32]".
TORCHFIT_EXPORT std::string shape_string(c10::IntArrayRef sizes);

}  // namespace torchfit
