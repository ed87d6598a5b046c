// The plugin listing cache: `torchfit plugins` answers from it without loading LibTorch or
// any plugin, as long as no plugin file changed (like GStreamer's registry cache).
// Torch-free: the launcher (main.cpp) reads it before the runner library is loaded.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace torchfit::cli {

/// What decides the folders `torchfit plugins` searches and how it prints: the program, its
/// --plugin-dir values, TORCHFIT_PLUGIN_PATH, and the versions of torchfit and LibTorch.
struct ListingKey {
  std::string program;
  std::vector<std::string> plugin_dirs;
  std::string env_path;
  std::string versions;
};

/// The key for `argv` when it is `torchfit plugins [--plugin-dir DIR]...` (nothing else: other
/// options change the listing, so those runs neither read nor write the cache).
std::optional<ListingKey> listing_key(int argc, char** argv);

/// The listing saved for `key`, if every searched folder still holds the same files (names,
/// sizes, modification times to the nanosecond); otherwise nothing.
std::optional<std::string> cached_listing(const ListingKey& key);

/// Saves `listing` (the exact output) with the state of the `searched` folders, atomically,
/// under $XDG_CACHE_HOME/torchfit (or ~/.cache/torchfit). Failing to write is not an error.
void save_listing(const ListingKey& key, const std::vector<std::filesystem::path>& searched, const std::string& listing);

/// This program's file (/proc/self/exe), or "" where it cannot be read.
std::string program_path();

/// "torchfit 0.1.0 (plugin ABI 3, LibTorch 1.13.0)": what --version prints.
std::string version_line();

}  // namespace torchfit::cli
