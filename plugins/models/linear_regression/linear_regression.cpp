// The seed's linear regression: y = 2·x1 − 3·x2 + 10 + N(0, 2), fitted by Linear(2, 1).
#include <torchfit/plugin.hpp>

namespace {

class LinearRegression final : public torchfit::ModelPlugin {
 public:
  explicit LinearRegression(int64_t samples) : samples_(samples) {}
  torchfit::Net make_net() const override { return torch::nn::Linear(2, 1); }
  torchfit::Loss make_loss() const override { return torch::nn::MSELoss(); }
  std::vector<std::string> default_metrics() const override { return {"mae"}; }
  // torchkeras' demo uses lr 0.01; with batches of 16 that leaves b at 9.3-9.9 after 100
  // epochs (not converged, seeds 1-7), so the default is 0.05 (see docs/callbacks.md).
  torchfit::OptimizerDefaults default_optimizer() const override { return {"adam", 0.05}; }
  int64_t default_batch_size() const override { return 16; }
  int64_t input_features() const override { return 2; }

  torchfit::DataSplits make_data(uint64_t seed) const override {
    auto gen = torchfit::compat::make_generator(seed);
    auto x = 10 * torch::rand({samples_, 2}, gen) - 5.0;
    auto w = torch::tensor({{2.0f}, {-3.0f}});
    auto y = x.matmul(w) + 10.0 + torch::normal(0.0, 2.0, {samples_, 1}, gen);
    auto parts = torchfit::random_split(torchfit::TensorDataset(x, y), std::vector<double>{0.7, 0.3}, seed);
    return {parts[0], parts[1]};
  }

 private:
  int64_t samples_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Model, "linear_regression", "1.0.0",
                            "Linear(2,1) on y = 2*x1 - 3*x2 + 10 + noise (torchkeras' first demo)");
  info.options->add_options()  //
      ("samples", boost::program_options::value<int64_t>()->default_value(400), "points to generate (70% train)");
  return info;
}

std::shared_ptr<torchfit::ModelPlugin> create(const torchfit::PluginOptions& options) {
  const auto samples = options["samples"].as<int64_t>();
  if (samples < 10) {
    throw torchfit::ConfigError("linear_regression.samples must be at least 10, got " + std::to_string(samples));
  }
  return std::make_shared<LinearRegression>(samples);
}

}  // namespace

TORCHFIT_MODEL_PLUGIN(describe, create)
