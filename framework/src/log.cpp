// torchfit.* loggers that inherit the host's sinks, level and pattern.
#include "torchfit/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace torchfit {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  const std::string full = "torchfit." + name;
  if (auto existing = spdlog::get(full)) {
    return existing;
  }
  auto sinks = spdlog::default_logger()->sinks();
  // A program that set up no logging has spdlog's default sink, stdout: torchfit's lines go to
  // stderr instead, with the progress display, out of the program's own output.
  static const auto to_stderr = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  for (auto& sink : sinks) {
    if (std::dynamic_pointer_cast<spdlog::sinks::stdout_color_sink_mt>(sink)) sink = to_stderr;
  }
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
