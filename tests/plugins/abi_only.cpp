// Test library: exports torchfit_plugin_abi but no torchfit_plugin_info (half a plugin).
#include <torchfit/plugin.hpp>

namespace {
unsigned abi_version() { return torchfit::kPluginAbiVersion; }
}  // namespace

BOOST_DLL_ALIAS(abi_version, torchfit_plugin_abi)
