// Where plugins are searched, in order. Free of LibTorch: the runner's launcher computes the
// same folders as the Registry before it loads anything (apps/torchfit/plugin_cache.hpp).
#pragma once

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "torchfit/version.hpp"  // kPluginFolderFromProgram, kPluginFolderFromLibrary

namespace torchfit {

/// The plugin folder beside `program` (<program folder>/../lib/torchfit/plugins, in the build
/// tree and after install alike), then the one beside `library` (libtorchfit.so's folder's
/// torchfit/plugins: where the package put its plugins, found by a program built anywhere),
/// then `extra`, then each folder of `env` (":"-separated, as TORCHFIT_PLUGIN_PATH).
inline std::vector<std::filesystem::path> plugin_search_path(const std::filesystem::path& program,
                                                             const std::vector<std::filesystem::path>& extra,
                                                             const char* env,
                                                             const std::filesystem::path& library = {}) {
  std::vector<std::filesystem::path> dirs{program.parent_path() / kPluginFolderFromProgram};
  if (!library.empty()) dirs.push_back(library.parent_path() / kPluginFolderFromLibrary);
  dirs.insert(dirs.end(), extra.begin(), extra.end());
  std::stringstream in(env ? env : "");
  for (std::string dir; std::getline(in, dir, ':');) {
    if (!dir.empty()) dirs.emplace_back(dir);
  }
  return dirs;
}

/// `dirs` made canonical (as far as they exist), each folder once, first place kept: the
/// folders a Registry scans and `torchfit plugins` shows.
inline std::vector<std::filesystem::path> unique_plugin_folders(const std::vector<std::filesystem::path>& dirs) {
  std::vector<std::filesystem::path> out;
  std::set<std::filesystem::path> seen;
  for (const auto& dir : dirs) {
    std::error_code ec;
    auto canonical = std::filesystem::weakly_canonical(dir, ec);
    if (ec) canonical = dir;
    if (seen.insert(canonical).second) out.push_back(canonical);
  }
  return out;
}

}  // namespace torchfit
