// ModelPlugin's default prediction columns.
#include "torchfit/model.hpp"

#include "torchfit/errors.hpp"

namespace torchfit {

Predictions ModelPlugin::to_predictions(const torch::Tensor& outputs) const {
  auto values = outputs.detach().to(torch::kCPU, torch::kDouble).reshape({outputs.size(0), -1});
  Predictions p;
  if (values.size(1) == 1) {
    p.columns = {"prediction"};
  } else {
    for (int64_t i = 0; i < values.size(1); ++i) {
      p.columns.push_back("prediction_" + std::to_string(i));
    }
  }
  p.values = values;
  return p;
}

torch::Tensor ModelPlugin::make_targets(const torch::Tensor& column, const std::string&) { return column; }

void ModelPlugin::adapt(const TensorDataset& train) {
  const auto width = train.features().size(1);
  if (width != input_features()) {
    throw DataError("this model takes " + std::to_string(input_features()) + " features per sample, the data has " +
                    std::to_string(width) + "; choose the columns with --features");
  }
}

}  // namespace torchfit
