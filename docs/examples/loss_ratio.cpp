// loss_ratio: logs val_loss / train_loss each epoch (a history column) and warns when it grows.
#include <torchfit/log.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

namespace {

class LossRatio final : public torchfit::Callback {
 public:
  explicit LossRatio(double warn_above) : warn_above_(warn_above) {}

  // What it reads and adds: fit() checks before epoch 1 that both values will be logged
  // (a run without validation data is refused at once), and others may monitor loss_ratio.
  std::vector<std::string> monitored_keys() const override { return {"val_loss", "train_loss"}; }
  std::vector<std::string> logged_keys(const torchfit::Context&) const override { return {"loss_ratio"}; }

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
  // A number option: torchfit::number refuses NaN, infinities and values out of its range,
  // naming the option (--loss_ratio.warn-above must be a positive number, got 0), exit 2.
  info.options->add_options()("warn-above",
                              torchfit::number<double>(torchfit::NumberRange::positive())->default_value(1.5),
                              "warn when val_loss / train_loss is above this");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& options) {
  return std::make_shared<LossRatio>(options["warn-above"].as<double>());
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
