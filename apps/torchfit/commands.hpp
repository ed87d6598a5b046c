// The runner's commands.
#pragma once

#include "cli.hpp"
#include "plugin_cache.hpp"

namespace torchfit::cli {

int run_train(Invocation& inv);
int run_evaluate(Invocation& inv);
int run_predict(Invocation& inv);
int run_summary(Invocation& inv);
int run_export(Invocation& inv);
/// Lists the plugins. `plain` (`torchfit plugins [--plugin-dir DIR]...`): folders without a
/// valid index get one in the user's cache, for the launcher to answer the next time
/// (plugin_cache.hpp). With --update-index: writes each folder's own index instead of listing.
int run_plugins(Invocation& inv, bool plain);

}  // namespace torchfit::cli
