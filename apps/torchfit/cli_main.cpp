// The runner's commands, in libtorchfit_cli (loaded by the torchfit launcher, main.cpp).
// Maps errors to exit codes: 0 ok, 1 runtime, 2 usage.
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include <torchfit/device.hpp>
#include <torchfit/distributed.hpp>
#include <torchfit/errors.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/version.hpp>

#include "cli.hpp"
#include "commands.hpp"
#include "plugin_cache.hpp"

namespace {

// "%*": nothing for info (plain messages), a prefix for everything else.
class LevelPrefix final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* prefix = "";
    switch (msg.level) {
      case spdlog::level::warn:
        prefix = "torchfit: warning: ";
        break;
      case spdlog::level::err:
      case spdlog::level::critical:
        prefix = "torchfit: error: ";
        break;
      case spdlog::level::debug:
      case spdlog::level::trace:
        prefix = "debug: ";
        break;
      default:
        break;
    }
    dest.append(prefix, prefix + std::strlen(prefix));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LevelPrefix>(); }
};

void set_up_logging(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("torchfit", sink));
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<LevelPrefix>('*').set_pattern("%*%v");
  spdlog::set_formatter(std::move(formatter));
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw torchfit::ConfigError("--log-level must be trace, debug, info, warn, error or off, got '" + level + "'");
  }
  spdlog::set_level(parsed);
}

// A data-parallel worker other than rank 0: "[rank N] " before its errors, which would
// otherwise read like rank 0's.
std::string rank_prefix() {
  try {
    const auto dist = torchfit::distributed_from_env();
    if (dist && dist->world_size > 1 && dist->rank != 0) return "[rank " + std::to_string(dist->rank) + "] ";
  } catch (const std::exception&) {
    // Malformed RANK/WORLD_SIZE: train says so; no prefix meanwhile.
  }
  return "";
}

int fail(int code, const std::string& message) {
  std::cout.flush();
  std::cerr << "torchfit: error: " << rank_prefix() << message << std::endl;
  return code;
}

}  // namespace

/// The runner with LibTorch loaded: everything the launcher does not answer itself.
extern "C" __attribute__((visibility("default"))) int torchfit_cli_main(int argc, char** argv) {
  using namespace torchfit;
  try {
    set_up_logging("info");
    const auto heap = tune_host_allocator();  // before anything allocates much: docs/performance.md
    if (argc >= 2) {
      const std::string first = argv[1];
      if (first == "--help" || first == "-h" || first == "help") {
        std::cout << cli::overview();
        return 0;
      }
      if (first == "--version") {
        std::cout << cli::version_line() << "\n";
        return 0;
      }
    }
    // Quiet and log level must be known before plugins are loaded and log anything.
    for (int i = 2; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--log-level=", 0) == 0) set_up_logging(arg.substr(12));
      if (arg == "--log-level" && i + 1 < argc) set_up_logging(argv[i + 1]);
      if (arg == "--quiet" || arg == "-q") spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
    }
    // Data-parallel workers other than rank 0 only warn: rank 0 tells the run's story.
    if (!rank_prefix().empty()) spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
    spdlog::debug("host allocator: {}", heap.reason);
    auto inv = cli::parse(argc, argv);
    if (inv.options.count("help")) {
      std::cout << cli::help(inv);
      return 0;
    }
    if (inv.command == "train") return cli::run_train(inv);
    if (inv.command == "evaluate") return cli::run_evaluate(inv);
    if (inv.command == "predict") return cli::run_predict(inv);
    if (inv.command == "summary") return cli::run_summary(inv);
    if (inv.command == "export") return cli::run_export(inv);
    return cli::run_plugins(inv, cli::plain_listing_folders(argc, argv).has_value());
  } catch (const CallbackError& e) {
    return fail(1, e.what());
  } catch (const ConfigError& e) {
    return fail(2, e.what());
  } catch (const PluginError& e) {
    return fail(2, e.what());
  } catch (const Error& e) {
    return fail(1, e.what());
  } catch (const c10::Error& e) {
    spdlog::debug("{}", e.what());
    return fail(1, std::string("LibTorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
