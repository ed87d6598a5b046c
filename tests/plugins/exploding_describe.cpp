// Test plugin: a well-formed callback plugin whose describe() throws. A folder holding it must
// still list and run every other plugin; asked for, it is refused by name and file.
#include <torchfit/plugin.hpp>

#include <stdexcept>

namespace {

torchfit::PluginInfo describe() { throw std::runtime_error("describe() exploded"); }

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions&) { return nullptr; }

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
