// ModelPlugin's default prediction columns.
#include "torchfit/model.hpp"

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

}  // namespace torchfit
