// History: columns, CSV/JSON export and a DataFrame-like tail.
#include "torchfit/history.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"

namespace torchfit {

std::vector<std::string> History::columns() const {
  std::vector<std::string> cols;
  for (const auto& row : rows_) {
    for (const auto& [key, value] : row) {
      if (std::find(cols.begin(), cols.end(), key) == cols.end()) {
        cols.push_back(key);
      }
    }
  }
  return cols;
}

std::vector<double> History::column(const std::string& name) const {
  bool seen = false;
  std::vector<double> out;
  out.reserve(rows_.size());
  for (const auto& row : rows_) {
    auto v = row.get(name);
    seen = seen || v.has_value();
    out.push_back(v.value_or(std::numeric_limits<double>::quiet_NaN()));
  }
  if (!seen && !rows_.empty()) {
    rows_.back().at(name);  // throws ConfigError listing the columns
  }
  return out;
}

namespace {

std::string csv_number(double v) { return std::isnan(v) ? "" : format_exact(v); }

}  // namespace

std::string History::to_csv_string() const {
  const auto cols = columns();
  std::ostringstream out;
  for (size_t c = 0; c < cols.size(); ++c) {
    out << (c ? "," : "") << cols[c];
  }
  out << '\n';
  for (const auto& row : rows_) {
    for (size_t c = 0; c < cols.size(); ++c) {
      auto v = row.get(cols[c]);
      out << (c ? "," : "") << (v ? csv_number(*v) : "");
    }
    out << '\n';
  }
  return out.str();
}

std::string History::to_json_string() const {
  std::ostringstream out;
  out << "[";
  for (size_t r = 0; r < rows_.size(); ++r) {
    out << (r ? ",\n " : "\n ") << "{";
    bool first = true;
    for (const auto& [key, value] : rows_[r]) {
      out << (first ? "" : ", ") << '"' << key << "\": " << json_number(value);
      first = false;
    }
    out << "}";
  }
  out << (rows_.empty() ? "]\n" : "\n]\n");
  return out.str();
}

void History::to_csv(const std::filesystem::path& path) const {
  const auto text = to_csv_string();
  atomic_write_text(path, [&](std::ostream& out) { out << text; });
}

void History::to_json(const std::filesystem::path& path) const {
  const auto text = to_json_string();
  atomic_write_text(path, [&](std::ostream& out) { out << text; });
}

std::string History::tail(std::size_t n) const {
  const auto cols = columns();
  const size_t first = rows_.size() > n ? rows_.size() - n : 0;
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width(cols.size());
  for (size_t c = 0; c < cols.size(); ++c) {
    width[c] = cols[c].size();
  }
  for (size_t r = first; r < rows_.size(); ++r) {
    std::vector<std::string> line;
    for (size_t c = 0; c < cols.size(); ++c) {
      auto v = rows_[r].get(cols[c]);
      line.push_back(v ? format_value(*v) : "NaN");
      width[c] = std::max(width[c], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  const size_t index_width = std::to_string(rows_.empty() ? 0 : rows_.size() - 1).size();
  std::ostringstream out;
  out << std::string(index_width, ' ');
  for (size_t c = 0; c < cols.size(); ++c) {
    out << "  " << std::setw(static_cast<int>(width[c])) << cols[c];
  }
  out << '\n';
  for (size_t r = 0; r < cells.size(); ++r) {
    out << std::left << std::setw(static_cast<int>(index_width)) << (first + r) << std::right;
    for (size_t c = 0; c < cols.size(); ++c) {
      out << "  " << std::setw(static_cast<int>(width[c])) << cells[r][c];
    }
    out << '\n';
  }
  return out.str();
}

}  // namespace torchfit
