// Test plugin: throws from the hook named by its `hook` option, at the epoch named by `epoch`.
#include <torchfit/plugin.hpp>

namespace {

class Throwing final : public torchfit::Callback {
 public:
  Throwing(std::string hook, int64_t epoch) : hook_(std::move(hook)), epoch_(epoch) {}
  void on_fit_begin(torchfit::Context& ctx) override { maybe("on_fit_begin", ctx); }
  void on_train_batch_end(torchfit::Context& ctx) override { maybe("on_train_batch_end", ctx); }
  void on_validation_end(torchfit::Context& ctx) override { maybe("on_validation_end", ctx); }
  void on_epoch_end(torchfit::Context& ctx) override { maybe("on_epoch_end", ctx); }
  void on_fit_end(torchfit::Context& ctx) override { maybe("on_fit_end", ctx); }

 private:
  void maybe(const char* hook, const torchfit::Context& ctx) {
    if (hook_ == hook && (ctx.epoch == epoch_ || epoch_ == 0)) {
      throw std::runtime_error("deliberate failure in " + hook_);
    }
  }
  std::string hook_;
  int64_t epoch_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "throwing", "0.0.1", "Test: throws from one hook");
  info.options->add_options()                                                                         //
      ("hook", boost::program_options::value<std::string>()->default_value("on_epoch_end"), "hook to throw in (create: the factory throws)")  //
      ("epoch", boost::program_options::value<int64_t>()->default_value(2), "epoch to throw at (0: any)");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  // A factory that fails at run time (a file it cannot open): a runtime error, not a usage one.
  if (o["hook"].as<std::string>() == "create") throw std::runtime_error("cannot open /dev/nothing-here");
  return std::make_shared<Throwing>(o["hook"].as<std::string>(), o["epoch"].as<int64_t>());
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
