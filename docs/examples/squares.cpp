// A dataset plugin built out of tree (docs/datasets.md): y = x^2 on [-1, 1].
//
//   torchfit train --model mlp --task regression --dataset squares --squares.samples 512 --plugin-dir DIR
#include <torchfit/plugin.hpp>

namespace {

class Squares final : public torchfit::DatasetPlugin {
 public:
  explicit Squares(const torchfit::PluginOptions& o) : n_(o["samples"].as<int64_t>()) {
    if (n_ < 2) throw torchfit::ConfigError("--squares.samples must be at least 2, got " + std::to_string(n_));
  }
  // The data the options select: any torchfit::Dataset (in memory, read per sample, a subset).
  std::shared_ptr<const torchfit::Dataset> load(const torchfit::DataRequest&) const override {
    auto x = torch::linspace(-1, 1, n_).unsqueeze(1);
    return std::make_shared<torchfit::TensorDataset>(torchfit::TensorDataset(x, x * x).named("squares"));
  }
  // Optional: load_validation() (else the runner's --val-split of load()) and transforms().

 private:
  int64_t n_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Dataset, "squares", "1.0", "y = x^2 on [-1, 1]");
  info.options->add_options()("samples", boost::program_options::value<int64_t>()->default_value(256), "points");
  return info;
}

std::shared_ptr<torchfit::DatasetPlugin> create(const torchfit::PluginOptions& o) { return std::make_shared<Squares>(o); }

}  // namespace

TORCHFIT_DATASET_PLUGIN(describe, create)
