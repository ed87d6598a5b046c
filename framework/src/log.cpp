// torchfit.* loggers that inherit the host's sinks, level and pattern.
#include "torchfit/log.hpp"

namespace torchfit {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  const std::string full = "torchfit." + name;
  if (auto existing = spdlog::get(full)) {
    return existing;
  }
  auto sinks = spdlog::default_logger()->sinks();
  auto created = std::make_shared<spdlog::logger>(full, sinks.begin(), sinks.end());
  try {
    spdlog::initialize_logger(created);  // applies the registry's level and formatter
  } catch (const spdlog::spdlog_ex&) {
    // Another thread registered it first.
    if (auto existing = spdlog::get(full)) {
      return existing;
    }
  }
  return created;
}

}  // namespace torchfit
