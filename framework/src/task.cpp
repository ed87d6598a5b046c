// Task: the loss, metrics, targets and prediction columns that follow from a model's task.
#include "torchfit/task.hpp"

#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

Task parse_task(const std::string& text, const std::string& model) {
  if (text == "binary") return Task::Binary;
  if (text == "multiclass") return Task::Multiclass;
  if (text == "regression") return Task::Regression;
  const char* tasks = "binary (one 0/1 target), multiclass (class indices 0, 1, 2, ...) or regression (numbers)";
  if (text.empty()) throw ConfigError("the " + model + " model needs --task: " + tasks);
  const auto guess = closest_name(text, {"binary", "multiclass", "regression"});
  throw ConfigError("unknown --task '" + text + "'" + (guess.empty() ? "" : "; did you mean '" + guess + "'?") +
                    " Tasks: " + tasks);
}

std::string task_name(Task task) {
  switch (task) {
    case Task::Binary: return "binary";
    case Task::Multiclass: return "multiclass";
    case Task::Regression: return "regression";
  }
  return "?";
}

Loss task_loss(Task task) {
  if (task == Task::Binary) return torch::nn::BCEWithLogitsLoss();
  if (task == Task::Multiclass) return torch::nn::CrossEntropyLoss();
  return torch::nn::MSELoss();
}

std::vector<std::string> task_metrics(Task task) {
  if (task == Task::Binary) return {"acc", "auc"};
  if (task == Task::Multiclass) return {"accuracy"};
  return {"mae", "r2"};
}

torch::Tensor task_targets(Task task, const torch::Tensor& column, const std::string& origin, int64_t classes,
                           int64_t& classes_seen) {
  if (task == Task::Regression) return column;
  const auto values = column.reshape({-1});
  auto fail_at = [&](const torch::Tensor& bad, const std::string& why) {
    const auto row = bad.nonzero().index({0, 0}).item<int64_t>();
    std::ostringstream v;
    v << values[row].item<float>();
    throw DataError("'" + origin + "', data row " + std::to_string(row + 1) + ": target " + v.str() + " " + why);
  };
  if (task == Task::Binary) {
    const auto bad = (values != 0) & (values != 1);
    if (bad.any().item<bool>()) fail_at(bad, "is not 0 or 1 (a binary task; use --task multiclass for classes)");
    return column;
  }
  const auto bad = (values < 0) | (values != values.round());
  if (bad.any().item<bool>()) {
    fail_at(bad, "is not a class index 0, 1, 2, ... (a multiclass task; use --task regression for numbers)");
  }
  const auto seen = values.numel() ? values.max().item<int64_t>() + 1 : 0;
  if (classes > 0 && seen > classes) {
    // The net is fixed: a class it has no output for.
    fail_at(values >= classes, "is beyond the model's " + std::to_string(classes) + " classes (0 to " +
                                   std::to_string(classes - 1) + ")");
  }
  classes_seen = std::max(classes_seen, seen);
  return values.to(torch::kLong);
}

Predictions task_predictions(Task task, const torch::Tensor& outputs) {
  const auto out = outputs.detach().to(torch::kCPU, torch::kDouble);
  if (task == Task::Binary) {
    auto p = torch::sigmoid(out).reshape({-1, 1});
    return {{"probability", "class"}, torch::cat({p, (p >= 0.5).to(torch::kDouble)}, 1)};
  }
  if (task == Task::Multiclass) {
    Predictions p;
    for (int64_t c = 0; c < out.size(1); ++c) p.columns.push_back("probability_" + std::to_string(c));
    p.columns.push_back("class");
    p.values = torch::cat({torch::softmax(out, 1), out.argmax(1, true).to(torch::kDouble)}, 1);
    return p;
  }
  return {{"prediction"}, out.reshape({-1, 1})};
}

}  // namespace torchfit
