// lr_monitor: logs the learning rate into the history's lr column and reports its changes.
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/scheduler.hpp>

namespace {

namespace po = boost::program_options;

// `lr` is the first parameter group's rate (torchkeras' column); when groups differ, lr_1,
// lr_2, ... follow. Set at the end of the training part of each epoch: the rate the epoch
// trained with, before an epoch-interval scheduler moves it.
class LrMonitor final : public torchfit::Callback {
 public:
  explicit LrMonitor(bool per_step) : per_step_(per_step) {}

  void on_fit_begin(torchfit::Context& ctx) override { last_ = torchfit::learning_rates(ctx.optimizer()); }

  // lr_1, lr_2, ... appear only in epochs whose groups' rates differ.
  std::vector<std::string> logged_keys(const torchfit::Context& ctx) const override {
    std::vector<std::string> keys{"lr"};
    const size_t groups = torchfit::learning_rates(ctx.optimizer()).size();
    for (size_t g = 1; g < groups; ++g) keys.push_back("lr_" + std::to_string(g));
    return keys;
  }

  void on_train_batch_end(torchfit::Context& ctx) override {
    if (per_step_) report(ctx, "step " + std::to_string(ctx.global_step));
  }

  void on_train_epoch_end(torchfit::Context& ctx) override {
    const auto rates = torchfit::learning_rates(ctx.optimizer());
    if (rates.empty()) return;
    ctx.logs.set("lr", rates[0]);
    bool differ = false;
    for (double r : rates) differ = differ || r != rates[0];
    if (differ) {
      for (size_t g = 1; g < rates.size(); ++g) ctx.logs.set("lr_" + std::to_string(g), rates[g]);
    }
    if (!per_step_) report(ctx, "epoch " + std::to_string(ctx.epoch));
  }

 private:
  void report(torchfit::Context& ctx, const std::string& when) {
    auto rates = torchfit::learning_rates(ctx.optimizer());
    if (rates != last_) {
      for (size_t g = 0; g < rates.size() && g < last_.size(); ++g) {
        if (rates[g] != last_[g]) {
          torchfit::logger("lr_monitor")
              ->info("lr{} changed from {} to {} at {}", g ? "_" + std::to_string(g) : std::string(),
                     torchfit::format_value(last_[g]), torchfit::format_value(rates[g]), when);
        }
      }
      last_ = std::move(rates);
    }
  }

  bool per_step_;
  std::vector<double> last_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "lr_monitor", "1.0.0",
                            "Logs the learning rate (history column lr) and reports when it changes");
  info.options->add_options()  //
      ("logging-interval", torchfit::one_of({"epoch", "step"})->default_value("epoch"),
       "when to look for changes: epoch, or step (after every optimizer step)");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  return std::make_shared<LrMonitor>(o["logging-interval"].as<std::string>() == "step");
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
