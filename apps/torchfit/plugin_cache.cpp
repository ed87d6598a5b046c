// The plugin index (see plugin_cache.hpp).
#include "plugin_cache.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "torchfit/plugin_path.hpp"
#include "torchfit/version.hpp"

namespace fs = std::filesystem;

namespace torchfit::cli {
namespace {

constexpr const char* kFormat = "torchfit plugin index 1";

fs::path cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') return fs::path(xdg) / "torchfit";
  if (const char* home = std::getenv("HOME"); home && *home == '/') return fs::path(home) / ".cache" / "torchfit";
  return {};
}

// The files the Registry would look at (every *.so, as it scans), one line each: enough to
// see any plugin added, removed, rebuilt or replaced. Nothing when the folder cannot be read.
std::optional<std::vector<std::string>> fingerprint(const fs::path& folder) {
  std::error_code ec;
  std::vector<std::string> lines;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".so") continue;
    struct stat st {};
    const std::string name = it->path().filename().string();
    if (::stat(it->path().c_str(), &st) != 0) {
      lines.push_back(name + " ?");
    } else {
      lines.push_back(name + ' ' + std::to_string(st.st_mode & S_IFMT) + ' ' + std::to_string(st.st_size) + ' ' +
                      std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec));
    }
  }
  if (ec) return std::nullopt;
  std::sort(lines.begin(), lines.end());
  return lines;
}

bool one_field(const std::string& s) { return s.find('\n') == std::string::npos && s.find('\t') == std::string::npos; }

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  for (std::string field; std::getline(in, field, '\t');) out.push_back(field);
  if (!line.empty() && line.back() == '\t') out.emplace_back();
  return out;
}

// Reads "<word> <count>" and then `count` lines.
bool read_block(std::istream& in, const std::string& word, std::vector<std::string>& lines) {
  std::string header;
  if (!std::getline(in, header) || header.rfind(word + ' ', 0) != 0) return false;
  char* end = nullptr;
  const long count = std::strtol(header.c_str() + word.size() + 1, &end, 10);
  if (count < 0 || count > 100000 || *end != '\0') return false;
  lines.resize(static_cast<size_t>(count));
  for (auto& line : lines) {
    if (!std::getline(in, line)) return false;
  }
  return true;
}

// The index in `file`, if it describes `folder` as it is now. `folder_line` is what the file
// must say of the folder: "." for a folder's own index (it moves with the folder), the path
// for the user's cache.
std::optional<FolderListing> read_index_file(const fs::path& file, const fs::path& folder, const std::string& folder_line) {
  std::ifstream in(file, std::ios::binary);
  std::string format, versions, where;
  if (!std::getline(in, format) || format != kFormat || !std::getline(in, versions) || versions != version_line() ||
      !std::getline(in, where) || where != "folder " + folder_line) {
    return std::nullopt;
  }
  std::vector<std::string> files, plugins, refused;
  if (!read_block(in, "files", files) || !read_block(in, "plugins", plugins) || !read_block(in, "refused", refused)) {
    return std::nullopt;
  }
  const auto now = fingerprint(folder);
  if (!now || *now != files) return std::nullopt;
  FolderListing listing{folder, true, {}, {}};
  for (const auto& line : plugins) {
    auto f = split_tabs(line);
    if (f.size() != 5) return std::nullopt;
    listing.plugins.push_back({f[0], f[1], f[2], f[3], f[4]});
  }
  for (const auto& line : refused) {
    auto f = split_tabs(line);
    if (f.size() != 3 || (f[0] != "0" && f[0] != "1")) return std::nullopt;
    listing.refused.push_back({f[1], f[2], f[0] == "1"});
  }
  return listing;
}

std::string pad(const std::string& s, size_t width) { return s + std::string(width > s.size() ? width - s.size() : 0, ' '); }

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

std::string format_listing(const std::vector<FolderListing>& folders, bool non_plugins) {
  std::ostringstream out;
  size_t name_width = 4, version_width = 7, count = 0;
  for (const auto& f : folders) {
    for (const auto& p : f.plugins) {
      name_width = std::max(name_width, p.name.size());
      version_width = std::max(version_width, p.version.size());
      ++count;
    }
  }
  out << pad("KIND", 9) << "  " << pad("NAME", name_width) << "  " << pad("VERSION", version_width)
      << "  DESCRIPTION\n";
  for (const char* kind : {"model", "dataset", "callback", "metric"}) {
    for (const auto& f : folders) {
      for (const auto& p : f.plugins) {
        if (p.kind != kind) continue;
        out << pad(kind, 9) << "  " << pad(p.name, name_width) << "  " << pad(p.version, version_width) << "  "
            << p.description << "\n"
            << std::string(13 + name_width + version_width, ' ') << "file: " << (f.folder / p.file).string() << "\n";
      }
    }
  }
  if (count == 0) out << "(no plugins found)\n";
  out << "\nplugin ABI " << kPluginAbiVersion << ", torchfit " << TORCHFIT_VERSION_STRING << ", LibTorch "
      << TORCHFIT_LIBTORCH_VERSION << "\nsearched:";
  for (const auto& f : folders) out << "\n  " << f.folder.string() << (f.exists ? "" : "  (does not exist)");
  out << "\n";
  bool header = false;
  for (const auto& f : folders) {
    for (const auto& r : f.refused) {
      if (!r.is_plugin && !non_plugins) continue;
      if (!header) out << "\nnot loaded:\n";
      header = true;
      out << "  " << (f.folder / r.file).string() << ": " << r.reason << "\n";
    }
  }
  return out.str();
}

std::optional<std::vector<fs::path>> plain_listing_folders(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "plugins") return std::nullopt;
  std::vector<fs::path> extra;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--plugin-dir" && i + 1 < argc) {
      extra.emplace_back(argv[++i]);
    } else if (arg.rfind("--plugin-dir=", 0) == 0) {
      extra.emplace_back(arg.substr(13));
    } else {
      return std::nullopt;
    }
  }
  const std::string program = program_path();
  if (program.empty()) return std::nullopt;
  return unique_plugin_folders(plugin_search_path(program, extra, std::getenv("TORCHFIT_PLUGIN_PATH")));
}

fs::path user_index_file(const fs::path& folder) {
  const auto dir = cache_dir();
  if (dir.empty()) return {};
  uint64_t h = 14695981039346656037ULL;  // FNV-1a of the folder and the versions
  for (unsigned char c : folder.string() + '\n' + version_line()) h = (h ^ c) * 1099511628211ULL;
  char name[48];
  std::snprintf(name, sizeof name, "folder-%016llx.index", static_cast<unsigned long long>(h));
  return dir / name;
}

std::optional<FolderListing> read_folder_index(const fs::path& folder) {
  return read_index_file(folder / kIndexFileName, folder, ".");
}

std::optional<FolderListing> read_index(const fs::path& folder) {
  if (auto own = read_folder_index(folder)) return own;
  const auto cached = user_index_file(folder);
  if (cached.empty() || !one_field(folder.string())) return std::nullopt;
  return read_index_file(cached, folder, folder.string());
}

std::string write_index(const FolderListing& listing, const fs::path& file) {
  const bool own = file == listing.folder / kIndexFileName;
  const std::string folder_line = own ? "." : listing.folder.string();
  if (!one_field(folder_line)) return "the folder's name has a tab or a line break";
  const auto files = fingerprint(listing.folder);
  if (!files) return "cannot read the folder " + listing.folder.string();
  std::ostringstream text;
  text << kFormat << '\n' << version_line() << '\n' << "folder " << folder_line << '\n' << "files " << files->size() << '\n';
  for (const auto& f : *files) text << f << '\n';
  text << "plugins " << listing.plugins.size() << '\n';
  for (const auto& p : listing.plugins) {
    for (const auto* field : {&p.kind, &p.name, &p.version, &p.description, &p.file}) {
      if (!one_field(*field)) return "plugin " + p.file + " describes itself with a tab or a line break";
    }
    text << p.kind << '\t' << p.name << '\t' << p.version << '\t' << p.description << '\t' << p.file << '\n';
  }
  text << "refused " << listing.refused.size() << '\n';
  for (const auto& r : listing.refused) {
    if (!one_field(r.file) || !one_field(r.reason)) return "the reason " + r.file + " was refused spans lines";
    text << (r.is_plugin ? '1' : '0') << '\t' << r.file << '\t' << r.reason << '\n';
  }
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  const fs::path tmp = file.string() + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text.str();
    if (!out.flush()) {
      const std::string why = std::strerror(errno);
      fs::remove(tmp, ec);
      return "cannot write " + file.string() + ": " + why;
    }
  }
  fs::rename(tmp, file, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return "cannot write " + file.string() + ": " + ec.message();
  }
  return "";
}

}  // namespace torchfit::cli
