// Logs: an insertion-ordered map of metric values.
#include "torchfit/logs.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "torchfit/errors.hpp"

namespace torchfit {

void Logs::set(std::string_view key, double value) {
  for (auto& item : items_) {
    if (item.first == key) {
      item.second = value;
      return;
    }
  }
  items_.emplace_back(std::string(key), value);
}

std::optional<double> Logs::get(std::string_view key) const {
  for (const auto& item : items_) {
    if (item.first == key) {
      return item.second;
    }
  }
  return std::nullopt;
}

double Logs::at(std::string_view key) const {
  if (auto v = get(key)) {
    return *v;
  }
  std::string known;
  for (const auto& item : items_) {
    known += (known.empty() ? "" : ", ") + item.first;
  }
  throw ConfigError("no value named '" + std::string(key) + "' was logged; the logged values are: " +
                    (known.empty() ? "(none)" : known));
}

void Logs::erase(std::string_view key) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == key) {
      items_.erase(it);
      return;
    }
  }
}

std::vector<std::string> Logs::keys() const {
  std::vector<std::string> out;
  out.reserve(items_.size());
  for (const auto& item : items_) {
    out.push_back(item.first);
  }
  return out;
}

std::string Logs::to_string(std::string_view separator) const {
  std::string out;
  for (const auto& [key, value] : items_) {
    if (!out.empty()) {
      out += separator;
    }
    out += key + "=" + format_value(value);
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) {
    return "nan";
  }
  if (std::isinf(value)) {
    return value > 0 ? "inf" : "-inf";
  }
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

std::string format_exact(double value) {
  char buf[40];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

std::string json_number(double value) { return std::isfinite(value) ? format_exact(value) : "null"; }

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace torchfit
