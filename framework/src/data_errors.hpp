// The data code's one way to turn what user code throws (a dataset, a stream, a transform) into a
// DataError that says where it happened.
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <string>
#include <utility>

#include "torchfit/errors.hpp"

namespace torchfit::detail {

/// Runs `body`; an exception from it becomes DataError(where() + ": " + its message). `where`
/// is called only then, so the hot path builds no strings. With `keep_data_errors`, a DataError
/// passes unchanged (it already names its place).
template <typename Where, typename Body>
decltype(auto) as_data_error(Where&& where, Body&& body, bool keep_data_errors = false) {
  try {
    return std::forward<Body>(body)();
  } catch (const DataError& e) {
    if (keep_data_errors) throw;
    throw DataError(where() + ": " + e.what());
  } catch (const c10::Error& e) {
    throw DataError(where() + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw DataError(where() + ": " + e.what());
  }
}

}  // namespace torchfit::detail
