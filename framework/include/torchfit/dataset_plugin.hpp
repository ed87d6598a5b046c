// DatasetPlugin: what a dataset plugin provides — the data a run trains, evaluates and predicts on, and its transforms.
#pragma once

#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "torchfit/dataset.hpp"
#include "torchfit/export.hpp"
#include "torchfit/transforms.hpp"

namespace torchfit {

/// What the runner asks a dataset plugin for.
struct DataRequest {
  enum class Purpose { Train, Evaluate, Predict, Summary };
  Purpose purpose = Purpose::Train;
  /// The model's ModelPlugin::make_targets: turns a target column read as numbers ([rows, 1],
  /// float32; a CSV file's) into what the model's loss expects, naming `origin` in its errors.
  /// A dataset whose targets already are what a model takes (class indices) does not call it.
  std::function<torch::Tensor(const torch::Tensor& column, const std::string& origin)> make_targets =
      [](const torch::Tensor& column, const std::string&) { return column; };
  /// Predict: the features per sample of the trained net (0 when not fixed), for a dataset that
  /// can check its input width before reading everything.
  int64_t input_features = 0;
};

/// A dataset plugin: the data its options select (a file, a folder, a split) for the runner's
/// `--dataset NAME`. Training holds out the runner's --val-split of load() for validation
/// unless the plugin has validation data of its own; evaluate and predict, given the dataset
/// on their command line, use all of load().
class TORCHFIT_EXPORT DatasetPlugin {
 public:
  virtual ~DatasetPlugin() = default;
  /// The data. With Purpose::Train and Evaluate it has targets; with Predict targets it may
  /// have are ignored; with Summary only the first sample's shapes matter. Throws DataError
  /// for data that cannot be read (naming the file and what was expected), ConfigError for
  /// options that do not go together.
  virtual std::shared_ptr<const Dataset> load(const DataRequest& request) const = 0;
  /// Validation data of its own (csv's --val-data), or null (the default): --val-split of load().
  virtual std::shared_ptr<const Dataset> load_validation(const DataRequest& request) const { return nullptr; }
  /// Per-sample transforms, run by the loader's workers: for `training`, the augmentation and
  /// what every sample needs; otherwise (validation, evaluate, predict) only the latter
  /// (conversion, normalization). None by default.
  virtual std::vector<Transform> transforms(bool training) const { return {}; }
};

/// How a CSV file's columns are read, as options: target, features, delimiter, missing (the
/// csv dataset's, and the runner's shortcuts for them; read_numeric_csv's CsvOptions).
TORCHFIT_EXPORT void add_csv_column_options(boost::program_options::options_description& options);

/// The image transforms every image dataset plugin offers, as its options (shown as
/// --<dataset>.<option>): mean, std, flip, crop-padding, erasing; with that dataset's defaults.
struct ImageTransformDefaults {
  std::vector<double> mean{0.0};  ///< of the images scaled to [0, 1]: one value, or one per channel
  std::vector<double> std{1.0};
  double flip = 0;           ///< probability of a horizontal flip
  int64_t crop_padding = 0;  ///< random crop after zero padding: shifts of up to this many pixels
  double erasing = 0;        ///< probability of random erasing
};
TORCHFIT_EXPORT void add_image_transform_options(boost::program_options::options_description& options,
                                                 const ImageTransformDefaults& defaults);
/// The transforms those options give for image field `field` (uint8 or float [C, H, W]): for
/// `training` random crop, flip, to_float (/255 for bytes), normalize, erasing; otherwise
/// to_float and normalize. Throws ConfigError for a bad value, naming `plugin`'s option.
TORCHFIT_EXPORT std::vector<Transform> image_transforms(const boost::program_options::variables_map& options,
                                                        const std::string& plugin, const std::string& field,
                                                        bool training);

}  // namespace torchfit
