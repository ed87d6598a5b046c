// Test plugin: appends the name of every hook it sees to a file, one per line.
#include <torchfit/plugin.hpp>

#include <cstdlib>
#include <fstream>

namespace {

class HookRecorder final : public torchfit::Callback {
 public:
  // In a data-parallel run each process records to FILE.rank<N>.
  explicit HookRecorder(std::string file) : out_(with_rank(std::move(file)), std::ios::app) {}
  static std::string with_rank(std::string file) {
    if (const char* rank = std::getenv("RANK")) file += std::string(".rank") + rank;
    return file;
  }
  void on_fit_begin(torchfit::Context&) override { out_ << "on_fit_begin\n"; }
  void on_fit_end(torchfit::Context&) override { out_ << "on_fit_end\n" << std::flush; }
  void on_epoch_begin(torchfit::Context&) override { out_ << "on_epoch_begin\n"; }
  void on_epoch_end(torchfit::Context&) override { out_ << "on_epoch_end\n"; }
  void on_train_epoch_begin(torchfit::Context&) override { out_ << "on_train_epoch_begin\n"; }
  void on_train_epoch_end(torchfit::Context&) override { out_ << "on_train_epoch_end\n"; }
  void on_train_batch_begin(torchfit::Context&) override { out_ << "on_train_batch_begin\n"; }
  void on_train_batch_end(torchfit::Context&) override { out_ << "on_train_batch_end\n"; }
  void on_before_backward(torchfit::Context&) override { out_ << "on_before_backward\n"; }
  void on_after_backward(torchfit::Context&) override { out_ << "on_after_backward\n"; }
  void on_before_optimizer_step(torchfit::Context&) override { out_ << "on_before_optimizer_step\n"; }
  void on_validation_begin(torchfit::Context&) override { out_ << "on_validation_begin\n"; }
  void on_validation_end(torchfit::Context&) override { out_ << "on_validation_end\n"; }
  void on_validation_batch_begin(torchfit::Context&) override { out_ << "on_validation_batch_begin\n"; }
  void on_validation_batch_end(torchfit::Context&) override { out_ << "on_validation_batch_end\n"; }
  void on_exception(torchfit::Context&, const std::exception& e) override {
    out_ << "on_exception: " << e.what() << "\n" << std::flush;
  }

 private:
  std::ofstream out_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "hook_recorder", "0.0.1", "Test: records every hook");
  info.options->add_options()("file", boost::program_options::value<std::string>()->default_value("hooks.txt"),
                              "file to append hook names to");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  return std::make_shared<HookRecorder>(o["file"].as<std::string>());
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
