// Option values: numbers checked against a declared range (runner and plugin options alike), and
// lists: "64, 32" (layer widths, channel counts), "0.5,0.5,0.5" (one per channel).
#pragma once

#include <boost/program_options/errors.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
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

/// What a number option accepts: a finite number (never NaN or infinite) within [min, max]
/// (an open end where `*_open`). `what` says it in words for the message ("a positive number").
struct TORCHFIT_EXPORT NumberRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;
  bool max_open = false;
  std::string what = "a finite number";

  bool accepts(double v) const {
    return v == v && v > -std::numeric_limits<double>::infinity() && v < std::numeric_limits<double>::infinity() &&
           (min_open ? v > min : v >= min) && (max_open ? v < max : v <= max);
  }
  /// Any finite number.
  static NumberRange finite() { return {}; }
  /// More than 0.
  static NumberRange positive();
  /// `min` or more; `note` follows the words ("(0: off)").
  static NumberRange at_least(double min, const std::string& note = "");
  /// From `min` to `max`, each end open or closed: "between 0 and 1 (exclusive)".
  static NumberRange between(double min, double max, bool min_open = false, bool max_open = false);
  /// No more than `max` besides (keeping the words, adding "up to MAX").
  NumberRange up_to(double max, const std::string& why = "") const;
};

/// The message for a value `range` refuses: "must be a positive number, got nan".
TORCHFIT_EXPORT std::string refusal(const NumberRange& range, const std::string& token);

/// A boost::program_options value of type T (double or an integer type) that refuses, as it is
/// parsed, a value outside `range`: `--lr must be a positive number, got inf`, naming the option
/// as it was given (the runner's, a plugin's `--<plugin>.<option>`, a config file's key). Every
/// numeric option of the runner and the standard plugins is declared with it, so no call site
/// checks a range of its own:
///
///     ("min-delta", torchfit::number<double>(torchfit::NumberRange::at_least(0))->default_value(0.0), "...")
template <typename T>
class CheckedNumber final : public boost::program_options::typed_value<T> {
 public:
  explicit CheckedNumber(NumberRange range) : boost::program_options::typed_value<T>(nullptr), range_(std::move(range)) {
    const std::string finite = "a finite number";
    if (std::is_integral<T>::value && range_.what.compare(0, finite.size(), finite) == 0) {
      range_.what.replace(0, finite.size(), "a whole number");
    }
  }
  void xparse(boost::any& store, const std::vector<std::string>& tokens) const override {
    boost::program_options::typed_value<T>::xparse(store, tokens);
    const T* v = boost::any_cast<T>(&store);
    if (v && !range_.accepts(static_cast<double>(*v))) {
      boost::program_options::error_with_option_name error("%canonical_option% " +
                                                           refusal(range_, tokens.empty() ? "" : tokens.front()));
      throw error;
    }
  }

 private:
  NumberRange range_;
};

template <typename T>
CheckedNumber<T>* number(NumberRange range = NumberRange::finite()) {
  return new CheckedNumber<T>(std::move(range));
}

/// A text option that takes one of a few words (epoch or step; min, max or auto), refused as it
/// is parsed with the closest word: `--lr_monitor.logging-interval must be epoch or step, got
/// 'stpe' (did you mean 'step'?)`. Every such option of the runner and the standard plugins is
/// declared with it:
///
///     ("interval", torchfit::one_of({"epoch", "step"})->default_value("epoch"), "...")
class TORCHFIT_EXPORT Choice final : public boost::program_options::typed_value<std::string> {
 public:
  explicit Choice(std::vector<std::string> words);
  void xparse(boost::any& store, const std::vector<std::string>& tokens) const override;
  const std::vector<std::string>& words() const { return words_; }

 private:
  std::vector<std::string> words_;
};

TORCHFIT_EXPORT Choice* one_of(std::vector<std::string> words);
/// "min, max or auto".
TORCHFIT_EXPORT std::string either(const std::vector<std::string>& words);

}  // namespace torchfit
