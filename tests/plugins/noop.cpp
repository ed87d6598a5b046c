// Test and benchmark plugin: a callback that overrides every hook and does nothing.
#include <torchfit/plugin.hpp>

namespace {

class Noop final : public torchfit::Callback {
 public:
  void on_fit_begin(torchfit::Context&) override {}
  void on_fit_end(torchfit::Context&) override {}
  void on_epoch_begin(torchfit::Context&) override {}
  void on_epoch_end(torchfit::Context&) override {}
  void on_train_epoch_begin(torchfit::Context&) override {}
  void on_train_epoch_end(torchfit::Context&) override {}
  void on_train_batch_begin(torchfit::Context&) override {}
  void on_train_batch_end(torchfit::Context&) override {}
  void on_before_backward(torchfit::Context&) override {}
  void on_after_backward(torchfit::Context&) override {}
  void on_before_optimizer_step(torchfit::Context&) override {}
  void on_validation_begin(torchfit::Context&) override {}
  void on_validation_end(torchfit::Context&) override {}
  void on_validation_batch_begin(torchfit::Context&) override {}
  void on_validation_batch_end(torchfit::Context&) override {}
};

torchfit::PluginInfo describe() {
  return torchfit::PluginInfo(torchfit::PluginKind::Callback, "noop", "0.0.1", "Test: does nothing in every hook");
}
std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions&) { return std::make_shared<Noop>(); }

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
