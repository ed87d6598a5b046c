// The plugin index: what each plugin folder holds, saved so that `torchfit plugins` answers
// without loading LibTorch or any plugin while no plugin file changed. Each folder's index is
// its own file `plugins.index` (written by `torchfit plugins --update-index`: by the build and
// by `cmake --install` for the standard folder, like fc-cache or GStreamer's registry), or, for
// folders without one, the user's cache ($XDG_CACHE_HOME/torchfit, written by any plain
// `torchfit plugins`). Torch-free: the launcher (main.cpp) reads it before the runner library
// is loaded, and the runner (commands.cpp) prints the listing with the same code.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace torchfit::cli {

/// One searched folder as `torchfit plugins` shows it.
struct FolderListing {
  struct Plugin {
    std::string kind;  ///< torchfit::kind_name()'s word: "model", "dataset", "callback" or "metric"
    std::string name, version, description;
    std::string file;  ///< name inside the folder
  };
  struct Refused {
    std::string file;  ///< name inside the folder
    std::string reason;
    bool is_plugin = false;  ///< a torchfit plugin refused, not some other library
  };
  std::filesystem::path folder;
  bool exists = false;
  std::vector<Plugin> plugins;  ///< in the Registry's order
  std::vector<Refused> refused;
};

/// The file name of a folder's own index.
inline constexpr const char* kIndexFileName = "plugins.index";

/// The listing of `folders`, in order. `non_plugins`: also the libraries refused for not being
/// torchfit plugins (--log-level debug).
std::string format_listing(const std::vector<FolderListing>& folders, bool non_plugins);

/// The folders, canonical and in order, that `argv` lists when it is a plain
/// `torchfit plugins [--plugin-dir DIR]...`; nothing for any other command line (other options
/// change the listing).
std::optional<std::vector<std::filesystem::path>> plain_listing_folders(int argc, char** argv);

/// What `folder` holds, from its own index or else the user's cache, if that index was made by
/// this torchfit and LibTorch and the folder's plugin files (names, sizes, modification times to
/// the nanosecond) are those it describes; otherwise nothing.
std::optional<FolderListing> read_index(const std::filesystem::path& folder);
/// The same from the folder's own index only.
std::optional<FolderListing> read_folder_index(const std::filesystem::path& folder);

/// Saves `listing` with the present state of its folder's plugin files, atomically, as `file`:
/// the folder's own index (`listing.folder / kIndexFileName`) or user_index_file(). Returns
/// what went wrong, or "" once written.
std::string write_index(const FolderListing& listing, const std::filesystem::path& file);

/// Where the user's cache keeps the index of `folder`; empty without a cache folder (no
/// XDG_CACHE_HOME nor HOME).
std::filesystem::path user_index_file(const std::filesystem::path& folder);

/// This program's file (/proc/self/exe), or "" where it cannot be read.
std::string program_path();

/// "torchfit 0.1.0 (plugin ABI 4, LibTorch 1.13.0)": what --version prints.
std::string version_line();

}  // namespace torchfit::cli
