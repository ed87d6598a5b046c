// The runner's commands.
#pragma once

#include <optional>

#include "cli.hpp"
#include "plugin_cache.hpp"

namespace torchfit::cli {

int run_train(Invocation& inv);
int run_evaluate(Invocation& inv);
int run_predict(Invocation& inv);
int run_summary(Invocation& inv);
/// Lists the plugins; with `cache_key` (a plain `torchfit plugins [--plugin-dir DIR]...`) the
/// listing is also saved for the launcher to answer the next time (plugin_cache.hpp).
int run_plugins(Invocation& inv, const std::optional<ListingKey>& cache_key);

}  // namespace torchfit::cli
