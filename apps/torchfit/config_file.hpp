// The runner's config files: INI text with `key = value` lines and `[plugin]` sections.
#pragma once

#include <istream>
#include <string>
#include <vector>

namespace torchfit::cli {

/// One `key = value` line of a config file.
struct ConfigEntry {
  std::string key;  ///< "epochs", or "early_stopping.patience" inside [early_stopping]
  std::string value;
  std::string file;
  int line = 0;
};

/// Reads an INI file: `key = value` lines, `[section]` headers (a plugin's name), `#` or `;`
/// comments. Throws ConfigError with file and line for a malformed line.
std::vector<ConfigEntry> read_config(const std::string& path);
/// The same from a stream; `origin` names it in messages.
std::vector<ConfigEntry> parse_config(std::istream& in, const std::string& origin);

/// The options that differ between a run's saved settings and a resume's, as
/// "lr was 0.01, now 0.1; ..." (empty when none), leaving out those a resume may change
/// (epochs, history, device, log level, progress display, ...).
std::string resume_differences(const std::string& saved, const std::string& now);

/// `s` without leading and trailing blanks.
std::string trim(const std::string& s);

}  // namespace torchfit::cli
