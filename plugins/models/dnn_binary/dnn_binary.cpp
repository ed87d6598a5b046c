// The seed's ring classifier: two noisy rings (radius 5 and 8), a 2-4-8-1 ReLU net.
#include <torchfit/plugin.hpp>

#include <cmath>

namespace {

class DnnBinary final : public torchfit::ModelPlugin {
 public:
  explicit DnnBinary(int64_t per_ring) : per_ring_(per_ring) {}
  torchfit::Net make_net() const override {
    return torch::nn::Sequential(torch::nn::Linear(2, 4), torch::nn::ReLU(), torch::nn::Linear(4, 8),
                                 torch::nn::ReLU(), torch::nn::Linear(8, 1));
  }
  torchfit::Loss make_loss() const override { return torch::nn::BCEWithLogitsLoss(); }
  std::vector<std::string> default_metrics() const override { return {"acc"}; }
  torchfit::OptimizerDefaults default_optimizer() const override { return {"adam", 0.001}; }
  int64_t default_batch_size() const override { return 100; }
  int64_t input_features() const override { return 2; }
  torchfit::Predictions to_predictions(const torch::Tensor& outputs) const override {
    auto probability = torch::sigmoid(outputs.detach().to(torch::kCPU, torch::kDouble)).reshape({-1, 1});
    return {{"probability", "class"}, torch::cat({probability, (probability >= 0.5).to(torch::kDouble)}, 1)};
  }

  torchfit::DataSplits make_data(uint64_t seed) const override {
    auto gen = torchfit::compat::make_generator(seed);
    auto ring = [&](double radius) {
      auto r = radius + torch::normal(0.0, 1.0, {per_ring_, 1}, gen);
      auto theta = 2 * M_PI * torch::rand({per_ring_, 1}, gen);
      return torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1);
    };
    auto x = torch::cat({ring(5.0), ring(8.0)}, 0);
    auto y = torch::cat({torch::ones({per_ring_, 1}), torch::zeros({per_ring_, 1})}, 0);
    auto parts = torchfit::random_split(torchfit::TensorDataset(x, y), std::vector<double>{0.7, 0.3}, seed);
    return {parts[0], parts[1]};
  }

 private:
  int64_t per_ring_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Model, "dnn_binary", "1.0.0",
                            "2-4-8-1 ReLU net separating two noisy rings (torchkeras' second demo)");
  info.options->add_options()  //
      ("per-ring", boost::program_options::value<int64_t>()->default_value(2000),
       "points per ring (positives at radius 5, negatives at radius 8; 70% train)");
  return info;
}

std::shared_ptr<torchfit::ModelPlugin> create(const torchfit::PluginOptions& options) {
  const auto per_ring = options["per-ring"].as<int64_t>();
  if (per_ring < 10) {
    throw torchfit::ConfigError("dnn_binary.per-ring must be at least 10, got " + std::to_string(per_ring));
  }
  return std::make_shared<DnnBinary>(per_ring);
}

}  // namespace

TORCHFIT_MODEL_PLUGIN(describe, create)
