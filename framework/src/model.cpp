// ModelPlugin's default prediction columns.
#include "torchfit/model.hpp"

#include "torchfit/errors.hpp"
#include "torchfit/batch.hpp"
#include "torchfit/text.hpp"

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

void ModelPlugin::adapt(const Dataset& train) {
  const auto first = train.sample(0);
  const auto& x = first.input();
  if (x.dim() != 1) {
    throw DataError("this model takes rows of " + std::to_string(input_features()) + " numbers, but a sample's input '" +
                    first.names(Role::Input)[0] + "' of " + train.name() + " is " + shape_string(x.sizes()));
  }
  const auto width = x.size(0);
  if (width != input_features()) {
    throw DataError("this model takes " + std::to_string(input_features()) + " features per sample, the data has " +
                    std::to_string(width) + "; choose the columns with --features");
  }
}

}  // namespace torchfit

namespace torchfit {

void ModelPlugin::save_torchscript(const Net&, const std::filesystem::path&) const {
  throw ConfigError("this model's net is written in C++ and has no TorchScript form; export its weights with "
                    "--format libtorch, state_dict or safetensors (--format torchscript is for the torchscript model)");
}

}  // namespace torchfit
