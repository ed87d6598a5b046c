// CSV reading (streamed, with errors that point at the line and column) and writing.
#include "torchfit/csv.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string_view>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"
#include "torchfit/text.hpp"

namespace torchfit {
namespace fs = std::filesystem;

namespace {

std::string_view trim(std::string_view s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

// Splits one line into cells, honouring quotes ("a,b" and "" for a quote). Cells are views
// into `line` or, for quoted cells with escaped quotes, into `scratch`: a deque, whose
// elements stay put as it grows (a vector's would move, leaving the views dangling: the
// CSV fuzzer found exactly that).
// Returns false for an unterminated quote.
bool split(std::string_view line, char delimiter, std::vector<std::string_view>& cells,
           std::deque<std::string>& scratch) {
  cells.clear();
  scratch.clear();
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t') && line[i] != delimiter) ++i;
    if (i < line.size() && line[i] == '"') {
      std::string value;
      bool escaped = false;
      size_t j = i + 1;
      for (;; ++j) {
        if (j >= line.size()) return false;
        if (line[j] == '"') {
          if (j + 1 < line.size() && line[j + 1] == '"') {
            value += '"';
            escaped = true;
            ++j;
            continue;
          }
          break;
        }
        value += line[j];
      }
      if (escaped) {
        scratch.push_back(std::move(value));
        cells.push_back(scratch.back());
      } else {
        cells.push_back(line.substr(i + 1, j - i - 1));
      }
      i = line.find(delimiter, j + 1);
      // Text after the closing quote and before the delimiter is ignored only when blank.
    } else {
      const size_t end = line.find(delimiter, i);
      cells.push_back(trim(line.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i)));
      i = end;
    }
    if (i == std::string_view::npos) return true;
    ++i;
  }
}

bool is_missing(std::string_view cell) {
  if (cell.empty()) return true;
  std::string lower(cell);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower == "na" || lower == "n/a" || lower == "nan" || lower == "null";
}

// A finite number, or nothing.
std::optional<float> parse_number(std::string_view cell) {
  if (!cell.empty() && cell[0] == '+') cell.remove_prefix(1);
  if (cell.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), value);
  if (ec != std::errc() || end != cell.data() + cell.size() || !std::isfinite(value) ||
      std::abs(value) > std::numeric_limits<float>::max()) {
    return std::nullopt;
  }
  return static_cast<float>(value);
}

std::string column_list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

// A column given by name or 1-based index.
int64_t find_column(const std::string& spec, const std::vector<std::string>& names, const std::string& origin,
                    const char* what) {
  const auto it = std::find(names.begin(), names.end(), spec);
  if (it != names.end()) return it - names.begin();
  int64_t index = 0;
  const auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), index);
  if (ec == std::errc() && end == spec.data() + spec.size()) {
    if (index >= 1 && index <= static_cast<int64_t>(names.size())) return index - 1;
    throw DataError("'" + origin + "' has " + std::to_string(names.size()) + " columns; " + what + " column " +
                    spec + " does not exist (columns are counted from 1)");
  }
  const auto guess = closest_name(spec, names);
  throw DataError("'" + origin + "' has no column named '" + spec + "' (the " + what + ")" +
                  (guess.empty() ? "" : "; did you mean '" + guess + "'?") + " Columns: " + column_list(names));
}

std::vector<int64_t> feature_columns(const CsvOptions& o, const std::vector<std::string>& names,
                                     std::optional<int64_t> target, const std::string& origin) {
  std::vector<int64_t> out;
  if (o.features.empty()) {
    for (int64_t c = 0; c < static_cast<int64_t>(names.size()); ++c) {
      if (!target || c != *target) out.push_back(c);
    }
    return out;
  }
  std::string item;
  std::stringstream in(o.features);
  while (std::getline(in, item, ',')) {
    const std::string spec(trim(item));
    if (spec.empty()) continue;
    const auto dash = spec.find('-', 1);
    int64_t a = 0, b = 0;
    if (dash != std::string::npos && std::find(names.begin(), names.end(), spec) == names.end() &&
        std::from_chars(spec.data(), spec.data() + dash, a).ec == std::errc() &&
        std::from_chars(spec.data() + dash + 1, spec.data() + spec.size(), b).ec == std::errc()) {
      if (a < 1 || b < a || b > static_cast<int64_t>(names.size())) {
        throw DataError("feature range " + spec + " does not fit '" + origin + "', which has " +
                        std::to_string(names.size()) + " columns (counted from 1)");
      }
      for (int64_t c = a - 1; c < b; ++c) out.push_back(c);
    } else {
      out.push_back(find_column(spec, names, origin, "feature"));
    }
  }
  for (const auto c : out) {
    if (target && c == *target) {
      throw DataError("column '" + names[c] + "' of '" + origin + "' is both the target and a feature");
    }
  }
  if (out.empty()) throw DataError("no feature columns selected in '" + origin + "'");
  return out;
}

}  // namespace

char parse_csv_delimiter(const std::string& text, const std::string& option) {
  if (text == "," || text == "comma") return ',';
  if (text == ";" || text == "semicolon") return ';';
  if (text == "\\t" || text == "\t" || text == "tab") return '\t';
  if (text == "|" || text == "pipe") return '|';
  if (text == " " || text == "space") return ' ';
  throw ConfigError(option + " must be comma, semicolon, tab, pipe or space (or the character), got '" + text + "'");
}

CsvHeader parse_csv_header(const std::string& text, const std::string& option) {
  if (text == "auto") return CsvHeader::Auto;
  if (text == "yes" || text == "true") return CsvHeader::Yes;
  if (text == "no" || text == "false") return CsvHeader::No;
  throw ConfigError(option + " must be auto, yes or no, got '" + text + "'");
}

CsvMissing parse_csv_missing(const std::string& text, const std::string& option) {
  if (text == "error") return CsvMissing::Error;
  if (text == "zero") return CsvMissing::Zero;
  if (text == "mean") return CsvMissing::Mean;
  throw ConfigError(option + " must be error, zero or mean, got '" + text + "'");
}

CsvData read_csv(const fs::path& path, const CsvOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw DataError("'" + path.string() + "' is a folder, not a CSV file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw DataError("cannot read '" + path.string() + "': " +
                    (fs::exists(path, ec) ? std::string(std::strerror(errno)) : std::string("no such file")));
  }
  std::vector<char> buffer(1 << 20);
  in.rdbuf()->pubsetbuf(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  return read_csv(in, path.string(), options);
}

CsvData read_csv(std::istream& in, const std::string& origin, const CsvOptions& options) {
  CsvData data;
  std::vector<float> features, targets;
  std::vector<int64_t> columns;        // feature columns, in output order
  std::optional<int64_t> target;       // target column
  int64_t width = -1;                  // cells per row
  int64_t rows = 0, lines_seen = 0;
  std::vector<std::pair<int64_t, int64_t>> missing;  // (row, feature) to fill by the mean
  std::vector<std::string_view> cells;
  std::deque<std::string> scratch;
  std::string line;
  auto where = [&](int64_t line_no, int64_t column) {
    std::string w = origin + ":" + std::to_string(line_no);
    if (column >= 0) {
      w += ":" + std::to_string(column + 1);
      if (!data.header.empty()) w += " ('" + data.header[column] + "')";
    }
    return w + ": ";
  };
  auto select = [&](int64_t line_no) {
    std::vector<std::string> names = data.header;
    if (names.empty()) {
      for (int64_t c = 1; c <= width; ++c) names.push_back("column " + std::to_string(c));
    }
    // Predict's input may lack a target named in the header of the training file.
    int64_t index = 0;
    const auto& t = options.target;
    const bool is_index = std::from_chars(t.data(), t.data() + t.size(), index).ptr == t.data() + t.size();
    const bool absent = options.ignore_target && !is_index && std::find(names.begin(), names.end(), t) == names.end();
    if (!options.target.empty() && !absent) {
      target = find_column(options.target, names, origin, "target");  // without a header: an index
      data.target_name = names[*target];
    }
    columns = feature_columns(options, names, target, origin);
    for (const auto c : columns) data.feature_names.push_back(names[c]);
    if (options.expected_features && static_cast<int64_t>(columns.size()) != *options.expected_features) {
      throw DataError(origin + ":" + std::to_string(line_no) + ": " + std::to_string(columns.size()) +
                      " columns, but the model takes " + std::to_string(*options.expected_features) + " features");
    }
  };

  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    ++lines_seen;
    const auto content = trim(line);
    if (content.empty() || (options.comment && content[0] == options.comment)) continue;
    if (!split(content, options.delimiter, cells, scratch)) {
      throw DataError(origin + ":" + std::to_string(line_no) + ": a quoted field is not closed (a '\"' is missing)");
    }
    const auto n = static_cast<int64_t>(cells.size());
    if (width < 0) {
      width = n;
      bool header = options.header == CsvHeader::Yes;
      if (options.header == CsvHeader::Auto) {
        for (const auto& c : cells) header = header || (!is_missing(c) && !parse_number(c));
      }
      if (header) {
        for (const auto& c : cells) data.header.emplace_back(c);
        select(line_no);
        continue;
      }
      select(line_no);
    } else if (n != width) {
      throw DataError(origin + ":" + std::to_string(line_no) + ": " + std::to_string(n) + " columns, expected " +
                      std::to_string(width) + (data.header.empty() ? " like the lines before" : " like the header"));
    }
    for (size_t f = 0; f < columns.size(); ++f) {
      const auto c = columns[f];
      if (is_missing(cells[c])) {
        if (options.missing == CsvMissing::Error) {
          throw DataError(where(line_no, c) + "missing value; fill it in, or choose a policy for missing values "
                          "(zero or mean)");
        }
        if (options.missing == CsvMissing::Mean) missing.emplace_back(rows, static_cast<int64_t>(f));
        features.push_back(0.0f);
        ++data.filled;
        continue;
      }
      const auto v = parse_number(cells[c]);
      if (!v) throw DataError(where(line_no, c) + "'" + std::string(cells[c]) + "' is not a number");
      features.push_back(*v);
    }
    if (target && !options.ignore_target) {
      const auto& cell = cells[*target];
      if (is_missing(cell)) throw DataError(where(line_no, *target) + "the target is missing");
      const auto v = parse_number(cell);
      if (!v) throw DataError(where(line_no, *target) + "'" + std::string(cell) + "' is not a number");
      targets.push_back(*v);
    }
    ++rows;
  }
  if (in.bad()) throw DataError("cannot read '" + origin + "': " + std::strerror(errno));
  if (width < 0) throw DataError("'" + origin + "' has no data rows (it is empty)");
  if (rows == 0) throw DataError("'" + origin + "' has a header but no data rows");

  const auto nf = static_cast<int64_t>(columns.size());
  if (!missing.empty()) {
    // Means over the rows that have a value, in double.
    std::vector<double> sum(nf, 0.0);
    std::vector<int64_t> count(nf, rows);
    for (const auto& [r, f] : missing) --count[f];
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t f = 0; f < nf; ++f) sum[f] += features[r * nf + f];  // filled cells hold 0 for now
    }
    for (const auto& [r, f] : missing) {
      if (count[f] == 0) {
        throw DataError("column '" + data.feature_names[f] + "' of '" + origin +
                        "' has no values at all; its mean cannot fill it");
      }
      features[r * nf + f] = static_cast<float>(sum[f] / static_cast<double>(count[f]));
    }
  }
  data.features = torch::from_blob(features.data(), {rows, nf}, torch::kFloat).clone();
  if (target && !options.ignore_target) data.targets = torch::from_blob(targets.data(), {rows, 1}, torch::kFloat).clone();
  return data;
}

CsvTable read_numeric_csv(const fs::path& path, std::optional<int64_t> columns) {
  CsvOptions o;
  o.expected_features = columns;
  auto data = read_csv(path, o);
  return {std::move(data.header), std::move(data.features)};
}

CsvTable read_numeric_csv(std::istream& in, const std::string& origin, std::optional<int64_t> columns) {
  CsvOptions o;
  o.expected_features = columns;
  auto data = read_csv(in, origin, o);
  return {std::move(data.header), std::move(data.features)};
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
