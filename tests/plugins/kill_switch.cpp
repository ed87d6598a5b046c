// Test plugin: sends the process a signal at a chosen point, to test crashes and resumes.
// TORCHFIT_TEST_KILL="hook:epoch:batch" (hook: train_batch, validation_batch, epoch_begin,
// epoch_end; batch ignored for the epoch hooks) and TORCHFIT_TEST_KILL_SIGNAL (default 9,
// SIGKILL); TORCHFIT_TEST_KILL_RANK limits it to one process of a data-parallel run. Unset, the plugin does nothing, so a run and its resume can list the same callbacks.
#include <csignal>
#include <cstdlib>
#include <string>

#include <torchfit/plugin.hpp>

namespace {

class KillSwitch final : public torchfit::Callback {
 public:
  KillSwitch() {
    const char* at = std::getenv("TORCHFIT_TEST_KILL");
    if (!at) return;
    const std::string spec = at;
    const auto a = spec.find(':'), b = spec.find(':', a + 1);
    hook_ = spec.substr(0, a);
    epoch_ = std::stoll(spec.substr(a + 1, b - a - 1));
    batch_ = b == std::string::npos ? 0 : std::stoll(spec.substr(b + 1));
    if (const char* s = std::getenv("TORCHFIT_TEST_KILL_SIGNAL")) signal_ = std::atoi(s);
    // Data-parallel runs: only the process of this rank (default: every process).
    if (const char* r = std::getenv("TORCHFIT_TEST_KILL_RANK")) {
      const char* rank = std::getenv("RANK");
      if (!rank || std::string(rank) != r) hook_.clear();
    }
  }
  void on_train_batch_end(torchfit::Context& ctx) override { maybe("train_batch", ctx, ctx.batch_index); }
  void on_validation_batch_end(torchfit::Context& ctx) override { maybe("validation_batch", ctx, ctx.batch_index); }
  void on_epoch_begin(torchfit::Context& ctx) override { maybe("epoch_begin", ctx, 0); }
  void on_epoch_end(torchfit::Context& ctx) override { maybe("epoch_end", ctx, 0); }

 private:
  void maybe(const char* hook, const torchfit::Context& ctx, int64_t batch) {
    if (hook_ == hook && ctx.epoch == epoch_ && batch == batch_ && !fired_) {
      fired_ = true;
      std::raise(signal_);
    }
  }
  std::string hook_;
  int64_t epoch_ = 0, batch_ = 0;
  int signal_ = SIGKILL;
  bool fired_ = false;
};

torchfit::PluginInfo describe() {
  return torchfit::PluginInfo(torchfit::PluginKind::Callback, "kill_switch", "1.0.0",
                              "Test only: raises a signal where TORCHFIT_TEST_KILL says");
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions&) { return std::make_shared<KillSwitch>(); }

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
