// loss_ratio: logs val_loss / train_loss each epoch (a history column) and warns when it grows.
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/plugin.hpp>

namespace {

class LossRatio final : public torchfit::Callback {
 public:
  explicit LossRatio(double warn_above) : warn_above_(warn_above) {}

  void on_validation_end(torchfit::Context& ctx) override {
    const double ratio = ctx.logs.at("val_loss") / ctx.logs.at("train_loss");
    ctx.logs.set("loss_ratio", ratio);  // becomes a history column
    if (ratio > warn_above_) {
      torchfit::logger("loss_ratio")->warn("epoch {}: val_loss is {:.2f}x train_loss (overfitting?)", ctx.epoch, ratio);
    }
  }

 private:
  double warn_above_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "loss_ratio", "1.0.0",
                            "Logs val_loss / train_loss and warns when it passes a limit");
  info.options->add_options()("warn-above", boost::program_options::value<double>()->default_value(1.5),
                              "warn when val_loss / train_loss is above this");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& options) {
  const double limit = options["warn-above"].as<double>();
  if (limit <= 0) throw torchfit::ConfigError("loss_ratio.warn-above must be positive");
  return std::make_shared<LossRatio>(limit);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
