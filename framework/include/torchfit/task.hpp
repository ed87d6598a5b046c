// Task: what a model's outputs mean (binary, multi-class, regression), and what follows from it:
// the loss, the default metrics, the targets a CSV column must hold, the prediction columns.
// Shared by the models that take the task as an option (mlp, torchscript).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/model.hpp"

namespace torchfit {

enum class Task {
  Binary,      ///< one logit per sample; BCEWithLogits; targets 0/1
  Multiclass,  ///< one logit per class; cross entropy; targets are class indices 0, 1, 2, ...
  Regression,  ///< values; MSE; targets are numbers
};

/// "binary", "multiclass" or "regression". An empty text: ConfigError "the `model` model needs
/// --task"; another: ConfigError with the closest task.
TORCHFIT_EXPORT Task parse_task(const std::string& text, const std::string& model);
TORCHFIT_EXPORT std::string task_name(Task task);
/// BCEWithLogitsLoss, CrossEntropyLoss or MSELoss.
TORCHFIT_EXPORT Loss task_loss(Task task);
/// {acc, auc}, {accuracy} or {mae, r2}.
TORCHFIT_EXPORT std::vector<std::string> task_metrics(Task task);
/// The targets the task's loss expects from a target column ([rows, 1], float32) of `origin`:
/// as read (regression, binary after checking each is 0 or 1) or class indices (multiclass,
/// int64). A value the task cannot learn is a DataError naming the row. `classes`: the classes
/// a net already has (0: not fixed yet); `classes_seen` grows to the largest label + 1.
TORCHFIT_EXPORT torch::Tensor task_targets(Task task, const torch::Tensor& column, const std::string& origin,
                                           int64_t classes, int64_t& classes_seen);
/// probability,class (binary), probability_0..K-1,class (multiclass) or prediction (regression).
TORCHFIT_EXPORT Predictions task_predictions(Task task, const torch::Tensor& outputs);

}  // namespace torchfit
