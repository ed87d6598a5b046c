// Shared test helpers: temporary folders, captured logs, small seeded datasets.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include <torchfit/torchfit.hpp>

namespace test {

namespace fs = std::filesystem;

/// A fresh folder under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("torchfit-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

/// Captures everything torchfit logs (set up once per test executable, before any logger exists).
inline std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_capture() {
  static auto sink = [] {
    auto s = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(2000);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", s));
    spdlog::set_pattern("%v");
    spdlog::set_level(spdlog::level::info);
    return s;
  }();
  return sink;
}

inline std::string captured_logs() {
  std::string out;
  for (const auto& line : log_capture()->last_formatted()) out += line;
  return out;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

/// y = 2*x1 - 3*x2 + 10 + noise, like the linear_regression plugin.
inline torchfit::TensorDataset regression_data(int64_t n, uint64_t seed) {
  auto gen = torchfit::compat::make_generator(seed);
  auto x = 10 * torch::rand({n, 2}, gen) - 5;
  auto y = x.matmul(torch::tensor({{2.0f}, {-3.0f}})) + 10 + 0.1 * torch::randn({n, 1}, gen);
  return torchfit::TensorDataset(x, y);
}

/// The folder the build writes the standard plugins to (the runner's default).
inline std::vector<fs::path> standard_plugin_dirs() { return torchfit::Registry::search_path(); }

/// One registry of the standard plugins per test executable.
inline torchfit::Registry& registry() {
  static torchfit::Registry reg(standard_plugin_dirs());
  return reg;
}

/// A callback plugin made as the runner makes it, from option strings ("--patience=3").
inline std::shared_ptr<torchfit::Callback> make_callback(const std::string& name, const std::vector<std::string>& args) {
  auto& reg = registry();
  return reg.make_callback(name, reg.parse_options(reg.find(name, torchfit::PluginKind::Callback), args));
}

/// What `body` threw (its what()), or "no error".
inline std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

/// Use as BOOST_GLOBAL_FIXTURE(test::CaptureLogs): torchfit's messages go to log_capture().
struct CaptureLogs {
  CaptureLogs() { log_capture(); }
};

}  // namespace test
