// The runner's config files. No LibTorch here: this is the parser the config fuzzer drives.
#include "config_file.hpp"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <torchfit/errors.hpp>

namespace torchfit::cli {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::vector<ConfigEntry> parse_config(std::istream& in, const std::string& origin) {
  std::vector<ConfigEntry> entries;
  std::string section, line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto text = trim(line);
    if (text.empty() || text[0] == '#' || text[0] == ';') continue;
    const std::string where = origin + ":" + std::to_string(n) + ": ";
    if (text[0] == '[') {
      if (text.back() != ']' || text.size() < 3) {
        throw ConfigError(where + "malformed section header '" + text + "'; write [plugin_name]");
      }
      section = trim(text.substr(1, text.size() - 2));
      continue;
    }
    const auto eq = text.find('=');
    if (eq == std::string::npos || trim(text.substr(0, eq)).empty()) {
      throw ConfigError(where + "malformed line '" + text + "'; write key = value");
    }
    auto key = trim(text.substr(0, eq));
    auto value = trim(text.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    entries.push_back({section.empty() ? key : section + "." + key, value, origin, n});
  }
  return entries;
}

std::vector<ConfigEntry> read_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("cannot read config file '" + path + "': " +
                      (std::ifstream(path).good() ? "permission denied" : "no such file"));
  }
  return parse_config(in, path);
}

std::string resume_differences(const std::string& saved, const std::string& now) {
  // Options that may change on a resume: they do not change what is computed.
  auto may_change = [](const std::string& key) {
    static const std::set<std::string> free{"epochs", "history", "log-level", "device", "resume",
                                            "state-every-steps", "plugin-dir", "callbacks", "pin-memory", "workers", "threads",
                                            // another process count continues from an epoch's end
                                            "nproc", "dist-timeout", "no-preflight"};
    return free.count(key) || key.rfind("progress_bar.", 0) == 0;
  };
  auto to_map = [](const std::string& text) {
    std::istringstream in(text);
    std::map<std::string, std::string> m;
    for (auto& e : parse_config(in, "settings")) m[e.key] = e.value;
    return m;
  };
  const auto before = to_map(saved);
  const auto after = to_map(now);
  // A plugin loaded on one side only (a callback added or left out): the trainer decides.
  auto sections = [](const std::map<std::string, std::string>& m) {
    std::set<std::string> out;
    for (const auto& [key, value] : m) {
      if (key.find('.') != std::string::npos) out.insert(key.substr(0, key.find('.')));
    }
    return out;
  };
  const auto sections_before = sections(before), sections_after = sections(after);
  auto one_sided = [&](const std::string& key) {
    const auto dot = key.find('.');
    if (dot == std::string::npos) return false;
    const auto section = key.substr(0, dot);
    return !sections_before.count(section) || !sections_after.count(section);
  };
  std::string out;
  auto note = [&](const std::string& key, const std::string& a, const std::string& b) {
    out += (out.empty() ? "" : "; ") + key + " was " + a + ", now " + b;
  };
  for (const auto& [key, value] : before) {
    if (may_change(key) || one_sided(key)) continue;
    const auto it = after.find(key);
    if (it == after.end()) {
      note(key, value, "unset");
    } else if (it->second != value) {
      note(key, value, it->second);
    }
  }
  for (const auto& [key, value] : after) {
    if (!may_change(key) && !one_sided(key) && !before.count(key)) note(key, "unset", value);
  }
  return out;
}

}  // namespace torchfit::cli
