// Named spdlog loggers (torchfit.*); the library never configures sinks, only apps do.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "torchfit/export.hpp"

namespace torchfit {

/// The logger `torchfit.<name>`, created on first use with the default logger's sinks and
/// the registry's level and pattern, so an app that sets those sees every torchfit message.
TORCHFIT_EXPORT std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace torchfit
