// ConfusionMetric's type, and the per-class report built from a confusion matrix.
#include "torchfit/metric.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

ConfusionMetric::~ConfusionMetric() = default;

std::shared_ptr<ConfusionMetric> find_confusion(const Metrics& metrics) {
  for (const auto& m : metrics) {
    if (auto c = std::dynamic_pointer_cast<ConfusionMetric>(m.second)) return c;
  }
  return nullptr;
}

namespace {
double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
}  // namespace

ClassReport::ClassReport(const torch::Tensor& matrix, const std::vector<std::string>& names) {
  if (matrix.dim() != 2 || matrix.size(0) != matrix.size(1)) {
    throw DataError("a confusion matrix is square, [K, K]; got " + shape_string(matrix.sizes()));
  }
  counts = matrix.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t k = counts.size(0);
  const auto* c = counts.data_ptr<int64_t>();
  int64_t hits = 0, present = 0;
  for (int64_t i = 0; i < k; ++i) {
    Row r;
    r.name = i < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(i)] : std::to_string(i);
    for (int64_t j = 0; j < k; ++j) {
      r.support += c[i * k + j];
      r.predicted += c[j * k + i];
    }
    const auto tp = static_cast<double>(c[i * k + i]);
    hits += c[i * k + i];
    total += r.support;
    r.precision = ratio(tp, static_cast<double>(r.predicted));
    r.recall = ratio(tp, static_cast<double>(r.support));
    r.f1 = ratio(2 * tp, static_cast<double>(r.support + r.predicted));
    if (r.support + r.predicted > 0) {
      ++present;
      macro_precision += r.precision;
      macro_recall += r.recall;
      macro_f1 += r.f1;
    }
    rows.push_back(std::move(r));
  }
  accuracy = ratio(static_cast<double>(hits), static_cast<double>(total));
  macro_precision = ratio(macro_precision, static_cast<double>(present));
  macro_recall = ratio(macro_recall, static_cast<double>(present));
  macro_f1 = ratio(macro_f1, static_cast<double>(present));
}

std::string ClassReport::to_string() const {
  size_t name_width = std::string("macro average").size();
  for (const auto& r : rows) name_width = std::max(name_width, r.name.size());
  std::ostringstream out;
  auto fixed = [](double v) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(4) << v;
    return s.str();
  };
  out << std::left << std::setw(static_cast<int>(name_width)) << "class" << std::right << std::setw(10) << "support"
      << std::setw(11) << "precision" << std::setw(9) << "recall" << std::setw(9) << "f1" << "\n";
  for (const auto& r : rows) {
    out << std::left << std::setw(static_cast<int>(name_width)) << r.name << std::right << std::setw(10) << r.support
        << std::setw(11) << fixed(r.precision) << std::setw(9) << fixed(r.recall) << std::setw(9) << fixed(r.f1)
        << "\n";
  }
  out << std::left << std::setw(static_cast<int>(name_width)) << "macro average" << std::right << std::setw(10) << total
      << std::setw(11) << fixed(macro_precision) << std::setw(9) << fixed(macro_recall) << std::setw(9)
      << fixed(macro_f1) << "\n";

  // The matrix: one row per true class, one column per predicted class (by index, named above).
  const int64_t k = counts.size(0);
  const auto* c = counts.data_ptr<int64_t>();
  int cell = static_cast<int>(std::to_string(std::max<int64_t>(k - 1, 0)).size());
  for (int64_t i = 0; i < k * k; ++i) cell = std::max(cell, static_cast<int>(std::to_string(c[i]).size()));
  cell += 1;
  const int label = static_cast<int>(std::to_string(std::max<int64_t>(k - 1, 0)).size() + 1 + name_width);
  out << "\nconfusion matrix (rows: true class, columns: predicted class)\n" << std::setw(label) << "";
  for (int64_t j = 0; j < k; ++j) out << std::setw(cell) << j;
  out << "\n";
  for (int64_t i = 0; i < k; ++i) {
    std::ostringstream head;
    head << i << ' ' << rows[static_cast<size_t>(i)].name;
    out << std::left << std::setw(label) << head.str() << std::right;
    for (int64_t j = 0; j < k; ++j) out << std::setw(cell) << c[i * k + j];
    out << "\n";
  }
  return out.str();
}

std::string ClassReport::json_members() const {
  std::ostringstream out;
  out << "\"per_class\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    out << (i ? ", " : "") << "{\"class\": " << json_string(r.name) << ", \"support\": " << r.support
        << ", \"precision\": " << json_number(r.precision) << ", \"recall\": " << json_number(r.recall)
        << ", \"f1\": " << json_number(r.f1) << "}";
  }
  out << "], \"macro_precision\": " << json_number(macro_precision) << ", \"macro_recall\": "
      << json_number(macro_recall) << ", \"macro_f1\": " << json_number(macro_f1) << ", \"confusion_matrix\": [";
  const int64_t k = counts.size(0);
  const auto* c = counts.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i) {
    out << (i ? ", [" : "[");
    for (int64_t j = 0; j < k; ++j) out << (j ? ", " : "") << c[i * k + j];
    out << "]";
  }
  out << "]";
  return out.str();
}

}  // namespace torchfit
