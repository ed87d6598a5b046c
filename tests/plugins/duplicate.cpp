// Test plugin: a second plugin called early_stopping, in a folder of its own.
#include <torchfit/plugin.hpp>

namespace {
torchfit::PluginInfo describe() {
  return torchfit::PluginInfo(torchfit::PluginKind::Callback, "early_stopping", "9.9.9", "Test: a duplicate name");
}
std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions&) {
  return std::make_shared<torchfit::Callback>();
}
}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
