// The runner's command line: commands, options, config files and plugin option routing.
#pragma once

#include <boost/program_options.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <torchfit/option_values.hpp>
#include <torchfit/registry.hpp>
#include <torchfit/state.hpp>

#include "config_file.hpp"

namespace torchfit::cli {

namespace po = boost::program_options;


/// The parsed command line of one command.
struct Invocation {
  std::string command;
  int argc = 0;            ///< the command line as given (the --nproc launcher repeats it)
  char** argv = nullptr;
  po::variables_map options;  ///< the runner's own options, command line over config file
  std::vector<ConfigEntry> config;
  std::string config_file;    ///< the config actually read (given, or found beside the checkpoint)
  std::unique_ptr<Registry> registry;
  std::string dataset;                 ///< the dataset plugin: --dataset, or csv for --data; empty: the model's data
  std::vector<std::string> callbacks;  ///< names, in order
  std::vector<std::string> metrics;    ///< names, empty: the model's defaults
  std::string resume_state;            ///< train --resume: the state file to continue
  StateInfo resume_info;               ///< ... and what it says about the run

  /// The typed options of plugin `name`: its defaults, then runner options of the same name
  /// (--monitor, --patience, ...), then --<name>.<option> and [<name>] values.
  PluginOptions plugin_options(const PluginEntry& entry) const;
  bool has(const std::string& key) const { return options.count(key) && !options[key].defaulted(); }
  /// The config file's value for `key` (the given file, the run's FILE.ini, or a resumed run's
  /// settings), if it has one.
  std::optional<std::string> config_value(const std::string& key) const {
    for (const auto& e : config) {
      if (e.key == key) return e.value;
    }
    return std::nullopt;
  }

  std::map<std::string, std::vector<std::string>> plugin_values;  ///< plugin -> {"--opt=value", ...}
  std::set<std::string> config_keys;  ///< runner options whose value came from the config file
  /// Given on the command line (not only in the config file, and not a default).
  bool on_command_line(const std::string& key) const { return has(key) && !config_keys.count(key); }
  /// Whether the command line names the data: --dataset, --data, or an option of the dataset.
  bool data_on_command_line() const;
};

/// What --val-split takes: a fraction strictly between 0 and 1.
NumberRange val_split_range();

/// The commands and their one-line descriptions, in the order --help lists them.
const std::vector<std::pair<std::string, std::string>>& commands();

/// Parses argv. Throws ConfigError (exit 2) for anything wrong. Returns with `options`
/// holding "help" when the command's help was asked for.
Invocation parse(int argc, char** argv);

/// The command's help: its options and the option groups of the plugins it would load.
std::string help(const Invocation& inv);
/// The top-level help.
std::string overview();

/// The resolved configuration of a train run, as a config file that repeats it.
std::string resolved_config(const Invocation& inv, const std::vector<const PluginEntry*>& plugins);

}  // namespace torchfit::cli
