// ModelPlugin: what a model plugin provides — a net, its loss, default metrics and optimizer, demo data.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "torchfit/data.hpp"
#include "torchfit/export.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

/// The optimizer a model trains best with, unless the user says otherwise.
struct OptimizerDefaults {
  std::string name = "adam";  ///< adam, adamw or sgd
  double lr = 3e-4;
};

/// What `torchfit predict` writes: named columns, one row per sample.
struct Predictions {
  std::vector<std::string> columns;
  torch::Tensor values;  ///< [N, columns.size()], on the CPU
};

/// A training split and a validation split.
struct DataSplits {
  TensorDataset train;
  TensorDataset val;
};

class TORCHFIT_EXPORT ModelPlugin {
 public:
  virtual ~ModelPlugin() = default;
  /// A freshly initialised net (initialisation draws from LibTorch's global generator).
  virtual Net make_net() const = 0;
  virtual Loss make_loss() const = 0;
  /// Metric names to log when the user gives none (e.g. {"acc"}).
  virtual std::vector<std::string> default_metrics() const = 0;
  virtual OptimizerDefaults default_optimizer() const { return {}; }
  virtual int64_t default_batch_size() const { return 32; }
  /// The model's own data, generated from `seed` (the same seed gives the same data). A model
  /// that only trains on the user's data (`--data`) throws ConfigError saying so.
  virtual DataSplits make_data(uint64_t seed) const = 0;
  /// Features per sample, for reading prediction inputs (CSV columns).
  virtual int64_t input_features() const = 0;

  // The user's data (`torchfit train --dataset NAME`, or `--data FILE.csv --target COLUMN`).
  // The dataset plugin reads it (a CSV file's target column through make_targets()), the model
  // adapt()s to the training split, then the runner calls make_net().

  /// The targets the loss expects, from the target column ([rows, 1], float32) of `origin`.
  /// Throws DataError for values the model cannot learn (naming the row). Called for every
  /// labelled file of a run (training and validation) before adapt(). By default: as read.
  virtual torch::Tensor make_targets(const torch::Tensor& column, const std::string& origin);
  /// Learns what the net needs from the training split, before make_net(): input width or
  /// image shape, classes, standardization statistics. Throws DataError for data the model
  /// cannot take. By default: checks that each sample's input is input_features() numbers.
  virtual void adapt(const Dataset& train);
  /// What adapt() learned that evaluate and predict need to rebuild the same net, as option
  /// values of this plugin ({"inputs", "10"}); the runner records them in the run's settings.
  virtual std::vector<std::pair<std::string, std::string>> learned_options() const { return {}; }
  /// Turns the net's raw outputs into what a user reads (probabilities, classes, values).
  /// By default: the outputs themselves, as `prediction` (or prediction_0, prediction_1, ...).
  virtual Predictions to_predictions(const torch::Tensor& outputs) const;
  /// `torchfit export --format torchscript`: writes `net` (made by make_net(), its weights
  /// loaded) as a TorchScript module Python's torch.jit.load reads. By default: ConfigError (a
  /// net written in C++ has no TorchScript form; the torchscript model's has).
  virtual void save_torchscript(const Net& net, const std::filesystem::path& path) const;
};

}  // namespace torchfit
