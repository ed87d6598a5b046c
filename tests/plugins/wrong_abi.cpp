// Test plugin: claims a plugin ABI this torchfit does not speak; its info must never be read.
#include <torchfit/plugin.hpp>

#include <cstdlib>

namespace {
unsigned future_abi() { return torchfit::kPluginAbiVersion + 1; }
const torchfit::PluginInfo& info() { std::abort(); }  // reading it would be a host bug
}  // namespace

BOOST_DLL_ALIAS(future_abi, torchfit_plugin_abi)
BOOST_DLL_ALIAS(info, torchfit_plugin_info)
