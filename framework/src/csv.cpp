// Numeric CSV reading and writing with errors that point at the line and column.
#include "torchfit/csv.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <limits>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"

namespace torchfit {
namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      cells.push_back(trim(cell));
      cell.clear();
    } else {
      cell += c;
    }
  }
  cells.push_back(trim(cell));
  return cells;
}

bool parse_number(const std::string& text, float& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return false;
  out = static_cast<float>(v);
  return true;
}

}  // namespace

CsvTable read_numeric_csv(const fs::path& path, std::optional<int64_t> columns) {
  std::ifstream in(path);
  if (!in) {
    std::error_code ec;
    throw DataError("cannot read '" + path.string() + "': " +
                    (fs::exists(path, ec) ? std::string(std::strerror(errno)) : std::string("no such file")));
  }
  return read_numeric_csv(in, path.string(), columns);
}

CsvTable read_numeric_csv(std::istream& in, const std::string& origin, std::optional<int64_t> columns) {
  CsvTable table;
  std::vector<float> values;
  int64_t width = -1;
  int64_t rows = 0;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    const auto content = trim(line);
    if (content.empty() || content[0] == '#') continue;
    const auto cells = split(content);
    std::vector<float> row(cells.size());
    size_t bad = cells.size();
    for (size_t c = 0; c < cells.size() && bad == cells.size(); ++c) {
      if (!parse_number(cells[c], row[c])) bad = c;
    }
    if (bad != cells.size() && width < 0 && table.header.empty()) {
      table.header = cells;  // the first line, with text in it: a header
      width = static_cast<int64_t>(cells.size());
      if (columns && width != *columns) {
        throw DataError(origin + ":" + std::to_string(line_no) + ": the header has " + std::to_string(width) +
                        " columns, but the model takes " + std::to_string(*columns) + " features");
      }
      continue;
    }
    const auto n = static_cast<int64_t>(cells.size());
    if (width < 0) {
      width = n;
      if (columns && width != *columns) {
        throw DataError(origin + ":" + std::to_string(line_no) + ": " + std::to_string(n) +
                        " columns, but the model takes " + std::to_string(*columns) + " features");
      }
    } else if (n != width) {
      throw DataError(origin + ":" + std::to_string(line_no) + ": " + std::to_string(n) + " columns, expected " +
                      std::to_string(width) + " like the lines before");
    }
    if (bad != cells.size()) {
      throw DataError(origin + ":" + std::to_string(line_no) + ":" + std::to_string(bad + 1) + ": '" +
                      cells[bad] + "' is not a number");
    }
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  if (in.bad()) {
    throw DataError("cannot read '" + origin + "': " + std::strerror(errno));
  }
  if (rows == 0) {
    throw DataError("'" + origin + "' has no data rows");
  }
  table.values = torch::from_blob(values.data(), {rows, width}, torch::kFloat).clone();
  return table;
}

void write_csv(const fs::path& path, const std::vector<std::string>& header, const torch::Tensor& values) {
  const auto v = values.to(torch::kCPU, torch::kDouble).contiguous();
  if (v.dim() != 2 || v.size(1) != static_cast<int64_t>(header.size())) {
    throw DataError("write_csv: " + std::to_string(header.size()) + " column names for values of " +
                    std::to_string(v.dim() == 2 ? v.size(1) : -1) + " columns");
  }
  const double* p = v.data_ptr<double>();
  atomic_write_text(path, [&](std::ostream& out) {
    for (size_t c = 0; c < header.size(); ++c) out << (c ? "," : "") << header[c];
    out << '\n' << std::setprecision(std::numeric_limits<float>::max_digits10);
    for (int64_t r = 0; r < v.size(0); ++r) {
      for (int64_t c = 0; c < v.size(1); ++c) out << (c ? "," : "") << p[r * v.size(1) + c];
      out << '\n';
    }
  });
}

}  // namespace torchfit
