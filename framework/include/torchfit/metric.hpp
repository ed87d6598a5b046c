// Metric: a value accumulated exactly over an epoch (update, compute, reset).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchfit/distributed.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// A metric keeps running sums on the device (no host sync per batch) and turns them into
/// one value in compute(), once per epoch. Values are exact over the epoch: counts and sums
/// are accumulated, never a mean of batch means. Concrete metrics live in plugins.
class TORCHFIT_EXPORT Metric {
 public:
  virtual ~Metric() = default;
  /// Adds one batch. `preds` are the net's raw outputs (detached), `targets` the batch's.
  /// Throws DataError when the shapes don't suit this metric.
  virtual void update(const torch::Tensor& preds, const torch::Tensor& targets) = 0;
  /// The value over every batch since the last reset (one host sync).
  virtual double compute() = 0;
  /// Forgets every batch.
  virtual void reset() = 0;
  /// Whether a larger value is better; `mode=auto` in early stopping and checkpoints uses it.
  virtual bool higher_is_better() const = 0;

  /// Saves the running sums, so a run resumed in the middle of an epoch reports the same
  /// value as one never interrupted. Return false (the default) when the metric cannot:
  /// the trainer then warns that train_<name> of a resumed epoch covers only its rest.
  virtual bool state_dict(torch::serialize::OutputArchive& archive) const { return false; }
  virtual void load_state_dict(torch::serialize::InputArchive& archive) {}

  /// Data-parallel training: combines this process's running state with every other
  /// process's (sum the counts and sums; gather what cannot be summed), so that compute()
  /// gives the value over all processes' samples, exactly. Every process calls it at the same
  /// point. Return false (the default) when the metric cannot: the trainer then warns that its
  /// value covers rank 0's samples only.
  virtual bool sync(Communicator& comm) { return false; }
};

/// A classification metric that keeps the epoch's confusion matrix behind its value (the
/// metrics plugin's `confusion_matrix` and `macro_f1`): `counts[t][p]` samples of class t
/// predicted as class p, exact over the epoch and, once synced, over every process.
/// `torchfit evaluate` finds it by this type and prints ClassReport(confusion_matrix()).
class TORCHFIT_EXPORT ConfusionMetric : public Metric {
 public:
  ~ConfusionMetric() override;  // defined in the framework: one type for dynamic_cast across plugins
  /// [K, K] int64 counts on the CPU, K the number of scores the net gives; [0, 0] before any batch.
  virtual torch::Tensor confusion_matrix() = 0;
};

/// Per-class precision, recall (the class's accuracy), F1 and support from a confusion matrix,
/// with their macro averages: the table `torchfit evaluate` prints for a classifier.
struct TORCHFIT_EXPORT ClassReport {
  struct Row {
    std::string name;  ///< the class's name, or its index
    int64_t support = 0;  ///< samples of this class
    int64_t predicted = 0;  ///< samples predicted as this class
    double precision = 0, recall = 0, f1 = 0;  ///< 0 where undefined (no sample or no prediction)
  };
  /// `counts` [K, K] (rows: true class, columns: predicted); `names` label the classes where
  /// given (fewer than K: the rest by index).
  explicit ClassReport(const torch::Tensor& counts, const std::vector<std::string>& names = {});
  std::vector<Row> rows;
  torch::Tensor counts;  ///< [K, K] int64
  int64_t total = 0;
  double accuracy = 0;
  /// Means over the classes that have a sample or a prediction (sklearn's and torchmetrics' macro).
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;

  /// The per-class table, then the confusion matrix (rows: true class, columns: predicted).
  std::string to_string() const;
  /// `"per_class": [{"class": ..., "support": ..., ...}, ...], "confusion_matrix": [[...], ...]`:
  /// members to put inside a JSON object.
  std::string json_members() const;
};

/// Named metrics in the order they appear in the history.
using Metrics = std::vector<std::pair<std::string, std::shared_ptr<Metric>>>;

/// The first metric in `metrics` that keeps a confusion matrix, or null.
TORCHFIT_EXPORT std::shared_ptr<ConfusionMetric> find_confusion(const Metrics& metrics);

/// The same metrics, measuring output `output` of a net of several: each renamed
/// "<output>_<name>" (`for_output("cls", registry.make_metrics({"acc"}))` logs train_cls_acc).
inline Metrics for_output(const std::string& output, Metrics metrics) {
  for (auto& m : metrics) m.first = output + "_" + m.first;
  return metrics;
}

}  // namespace torchfit
