// The plugin listing cache (see plugin_cache.hpp).
#include "plugin_cache.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "torchfit/version.hpp"

namespace fs = std::filesystem;

namespace torchfit::cli {
namespace {

constexpr const char* kFormat = "torchfit plugin listing cache 1";

fs::path cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') return fs::path(xdg) / "torchfit";
  if (const char* home = std::getenv("HOME"); home && *home == '/') return fs::path(home) / ".cache" / "torchfit";
  return {};
}

std::string key_text(const ListingKey& key) {
  std::string text = key.program + '\t' + key.env_path + '\t' + key.versions;
  for (const auto& d : key.plugin_dirs) text += '\t' + d;
  return text;
}

fs::path cache_file(const ListingKey& key) {
  const auto dir = cache_dir();
  if (dir.empty()) return {};
  uint64_t h = 14695981039346656037ULL;  // FNV-1a
  for (unsigned char c : key_text(key)) h = (h ^ c) * 1099511628211ULL;
  char name[40];
  std::snprintf(name, sizeof name, "plugins-%016llx.txt", static_cast<unsigned long long>(h));
  return dir / name;
}

// One line per searched folder and per file in it: enough to see any plugin added, removed,
// rebuilt or replaced.
std::string fingerprint(const std::vector<std::string>& dirs) {
  std::ostringstream out;
  for (const auto& d : dirs) {
    std::error_code ec;
    std::vector<std::string> lines;
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
      struct stat st {};
      if (::stat(it->path().c_str(), &st) != 0) continue;
      lines.push_back("F " + it->path().filename().string() + ' ' + std::to_string(st.st_size) + ' ' +
                      std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec));
    }
    std::sort(lines.begin(), lines.end());
    out << "D " << d << (ec ? " ?" : "") << '\n';
    for (const auto& l : lines) out << l << '\n';
  }
  return out.str();
}

bool one_line(const std::string& s) { return s.find('\n') == std::string::npos && s.find('\t') == std::string::npos; }

}  // namespace

std::string program_path() {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe);
  return n > 0 && static_cast<size_t>(n) < sizeof exe ? std::string(exe, static_cast<size_t>(n)) : std::string();
}

std::string version_line() {
  return std::string("torchfit ") + TORCHFIT_VERSION_STRING + " (plugin ABI " + std::to_string(kPluginAbiVersion) +
         ", LibTorch " + TORCHFIT_LIBTORCH_VERSION + ")";
}

std::optional<ListingKey> listing_key(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "plugins") return std::nullopt;
  ListingKey key;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--plugin-dir" && i + 1 < argc) {
      key.plugin_dirs.push_back(argv[++i]);
    } else if (arg.rfind("--plugin-dir=", 0) == 0) {
      key.plugin_dirs.push_back(arg.substr(13));
    } else {
      return std::nullopt;
    }
  }
  key.program = program_path();
  if (key.program.empty()) return std::nullopt;
  if (const char* env = std::getenv("TORCHFIT_PLUGIN_PATH")) key.env_path = env;
  key.versions = version_line();
  if (!one_line(key.program) || !one_line(key.env_path) ||
      !std::all_of(key.plugin_dirs.begin(), key.plugin_dirs.end(), one_line)) {
    return std::nullopt;
  }
  return key;
}

std::optional<std::string> cached_listing(const ListingKey& key) {
  const auto file = cache_file(key);
  if (file.empty()) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  std::string format, stored_key, count_line;
  if (!std::getline(in, format) || format != kFormat || !std::getline(in, stored_key) || stored_key != key_text(key) ||
      !std::getline(in, count_line)) {
    return std::nullopt;
  }
  // The folders searched, then their state when the listing was made.
  std::vector<std::string> dirs;
  const long count = std::strtol(count_line.c_str(), nullptr, 10);
  for (long i = 0; i < count; ++i) {
    std::string d;
    if (!std::getline(in, d)) return std::nullopt;
    dirs.push_back(d);
  }
  const std::string now = fingerprint(dirs);
  std::string then(now.size(), '\0');
  if (!in.read(then.data(), static_cast<std::streamsize>(then.size())) || then != now) return std::nullopt;
  std::ostringstream listing;
  listing << in.rdbuf();
  return listing.str();
}

void save_listing(const ListingKey& key, const std::vector<fs::path>& searched, const std::string& listing) {
  const auto file = cache_file(key);
  if (file.empty()) return;
  std::vector<std::string> dirs;
  for (const auto& d : searched) {
    if (!one_line(d.string())) return;
    dirs.push_back(d.string());
  }
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  const fs::path tmp = file.string() + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << kFormat << '\n' << key_text(key) << '\n' << dirs.size() << '\n';
    for (const auto& d : dirs) out << d << '\n';
    out << fingerprint(dirs) << listing;
    if (!out.flush()) {
      fs::remove(tmp, ec);
      return;
    }
  }
  fs::rename(tmp, file, ec);
  if (ec) fs::remove(tmp, ec);
}

}  // namespace torchfit::cli
