// Lists in option values: split, trimmed, parsed whole.
#include "torchfit/option_values.hpp"

#include <cmath>
#include <exception>
#include <sstream>

namespace torchfit {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    items.push_back(b == std::string::npos ? "" : item.substr(b, item.find_last_not_of(" \t") - b + 1));
  }
  return items;
}

std::optional<std::vector<int64_t>> parse_int_list(const std::string& text, int64_t min, int64_t max) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(text)) {
    if (item.empty()) continue;
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(item, &used);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (used != item.size() || n < min || n > max) return std::nullopt;
    out.push_back(n);
  }
  return out;
}

std::optional<std::vector<double>> parse_number_list(const std::string& text) {
  std::vector<double> out;
  for (const auto& item : split_list(text)) {
    size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (item.empty() || used != item.size() || !std::isfinite(v)) return std::nullopt;
    out.push_back(v);
  }
  return out;
}

}  // namespace torchfit
