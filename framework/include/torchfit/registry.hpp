// Registry: finds plugins on disk, reads their info without creating them, and makes them.
#pragma once

#include <boost/dll/shared_library.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/plugin.hpp"

namespace torchfit {

/// One plugin found on disk.
struct PluginEntry {
  /// First member, so it is destroyed last: `info` holds objects whose code is in the library.
  std::shared_ptr<boost::dll::shared_library> library;
  PluginInfo info;
  std::filesystem::path file;
};

/// A file that was looked at and not taken, with the reason.
struct SkippedFile {
  std::filesystem::path file;
  std::string reason;
  /// A torchfit plugin refused (wrong ABI or LibTorch, a describe() that threw), or a file the
  /// loader could not load at all (truncated, no ELF, a missing dependency), which may be one:
  /// `torchfit plugins` lists these. False only for a library that loads and is no plugin.
  bool is_plugin = false;
};

class TORCHFIT_EXPORT Registry {
 public:
  /// Searches `dirs` in order (missing folders are skipped and remembered).
  explicit Registry(std::vector<std::filesystem::path> dirs);

  /// The folders to search, in order: the plugin folder beside the program
  /// (<program folder>/../lib/torchfit/plugins, in the build tree and after install alike),
  /// then `extra` (the runner's --plugin-dir), then each folder of `TORCHFIT_PLUGIN_PATH`.
  static std::vector<std::filesystem::path> search_path(const std::vector<std::filesystem::path>& extra = {});

  const std::vector<PluginEntry>& plugins() const { return plugins_; }
  const std::vector<SkippedFile>& skipped() const { return skipped_; }
  const std::vector<std::filesystem::path>& dirs() const { return dirs_; }

  /// The plugin called `name` of kind `kind` (for metrics: the library providing metric
  /// `name`). Throws PluginError naming the closest names, the folders searched, both ABI
  /// versions of a refused plugin, or both files of a duplicated name.
  const PluginEntry& find(const std::string& name, PluginKind kind) const;

  /// Parses `args` ("--patience=5" style, unprefixed) against the plugin's options.
  /// Throws ConfigError naming the plugin and option.
  PluginOptions parse_options(const PluginEntry& entry, const std::vector<std::string>& args = {}) const;

  // The made objects hold the library: it stays loaded while any of them lives.
  std::shared_ptr<Callback> make_callback(const std::string& name, const PluginOptions& options) const;
  std::shared_ptr<Metric> make_metric(const std::string& name, const PluginOptions& options) const;
  std::shared_ptr<ModelPlugin> make_model(const std::string& name, const PluginOptions& options) const;
  /// Its datasets and transforms hold the library too.
  std::shared_ptr<DatasetPlugin> make_dataset(const std::string& name, const PluginOptions& options) const;
  /// A plugin's options by their plain names and values: {{"patience", "10"}, {"monitor", "val_acc"}}.
  using OptionValues = std::vector<std::pair<std::string, std::string>>;
  /// The callback plugin `name` with `options`, in one call: an unknown option name (with the
  /// closest one) or a bad value is a ConfigError naming the plugin, as the runner refuses them.
  ///
  ///     auto stop = plugins.callback("early_stopping", {{"monitor", "val_acc"}, {"patience", "10"}});
  std::shared_ptr<Callback> callback(const std::string& name, const OptionValues& options = {}) const;
  /// The metric `name` (a name a metric plugin provides: "acc", "auc") with `options`.
  std::shared_ptr<Metric> metric(const std::string& name, const OptionValues& options = {}) const;
  std::shared_ptr<ModelPlugin> model(const std::string& name, const OptionValues& options = {}) const;
  std::shared_ptr<DatasetPlugin> dataset(const std::string& name, const OptionValues& options = {}) const;
  /// `options` checked and parsed against plugin `entry`'s declared options.
  PluginOptions parse_option_values(const PluginEntry& entry, const OptionValues& options) const;

  /// Every named metric, made with default options. Throws for duplicates.
  Metrics make_metrics(const std::vector<std::string>& names) const;

  /// The names of every plugin of `kind` (metric names for metrics).
  std::vector<std::string> names(PluginKind kind) const;

 private:
  void scan(const std::filesystem::path& dir);

  std::vector<std::filesystem::path> dirs_;
  std::vector<PluginEntry> plugins_;
  std::vector<SkippedFile> skipped_;
};


}  // namespace torchfit
