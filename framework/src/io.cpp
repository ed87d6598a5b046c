// Atomic file replacement (temporary file, fsync, rename, fsync of the folder).
#include "torchfit/io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "torchfit/errors.hpp"

namespace torchfit {
namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) {
    throw CheckpointError("cannot open '" + path.string() + "' to sync it: " + std::strerror(errno));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && !(directory && (err == EINVAL || err == EROFS))) {
    throw CheckpointError("cannot sync '" + path.string() + "' to disk: " + std::strerror(err));
  }
}

fs::path temporary_sibling(const fs::path& target) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return target.parent_path() / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(rng() % 1000000));
}

// Fault injection for the crash tests: TORCHFIT_TEST_CRASH_IN_SAVE="<file name>:<n>" kills the
// process (SIGKILL) during the n-th save of that file, after the temporary file is written
// and before the rename: the moment a crash is most likely to corrupt a naive writer.
// "<file name>:<n>:fail" makes that save fail with an error instead (a disk that fills).
void maybe_crash_in_save(const fs::path& target) {
  static const char* spec = std::getenv("TORCHFIT_TEST_CRASH_IN_SAVE");
  if (!spec) return;
  static std::atomic<int> count{0};
  std::string s(spec);
  const std::string fail_suffix = ":fail";
  const bool fail = s.size() > fail_suffix.size() && s.compare(s.size() - fail_suffix.size(), fail_suffix.size(), fail_suffix) == 0;
  if (fail) s.resize(s.size() - fail_suffix.size());
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || target.filename().string() != s.substr(0, colon)) return;
  if (++count != std::atoi(s.c_str() + colon + 1)) return;
  if (fail) throw CheckpointError("cannot write '" + target.string() + "': No space left on device (injected)");
  ::kill(::getpid(), SIGKILL);
}

// Removes the temporary siblings of `target` that a killed process left behind: their
// names carry the writer's process id, and that process no longer exists.
void remove_stale_temporaries(const fs::path& parent, const fs::path& target) {
  const std::string prefix = "." + target.filename().string() + ".tmp-";
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

}  // namespace

void atomic_replace(const fs::path& target, const std::function<void(const fs::path& tmp)>& write) {
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const fs::path tmp = temporary_sibling(parent / target.filename());
  remove_stale_temporaries(parent, target);
  try {
    write(tmp);
    fsync_path(tmp, false);
    maybe_crash_in_save(target);
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) {
      throw CheckpointError("cannot move '" + tmp.string() + "' to '" + target.string() + "': " + ec.message());
    }
    try {
      fsync_path(parent, true);
    } catch (const CheckpointError& e) {
      // The new file is in place; only its folder's entry may not be on disk yet.
      throw CheckpointError("wrote '" + target.string() + "' but " + e.what() +
                            "; a crash now could leave the previous version");
    }
  } catch (const CheckpointError&) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw CheckpointError("cannot write '" + target.string() + "': " + e.what());
  }
}

void atomic_write_text(const fs::path& target, const std::function<void(std::ostream&)>& write) {
  atomic_replace(target, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw CheckpointError("cannot create '" + tmp.string() + "': " + std::strerror(errno) +
                            " (does the folder exist, and may you write to it?)");
    }
    write(out);
    out.flush();
    if (!out) {
      throw CheckpointError("cannot write '" + tmp.string() + "': " + std::strerror(errno) + " (is the disk full?)");
    }
  });
}

void atomic_write_bytes(const fs::path& target, const std::string& bytes, const std::string& what) {
  atomic_replace(target, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw CheckpointError("cannot create '" + tmp.string() + "': " + std::strerror(errno) +
                            " (does the folder exist, and may you write to it?)");
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      throw CheckpointError("cannot write " + what + " '" + target.string() + "': " + std::strerror(errno) +
                            " (is the disk full?); the previous " + what + " is unchanged");
    }
  });
}

void check_writable_parent(const fs::path& path, const std::string& what) {
  if (path.empty() || path.filename().empty() || path.filename() == "." || path.filename() == "..") {
    throw ConfigError(what + " '" + path.string() + "' names no file; give a file name");
  }
  const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    throw ConfigError(what + " '" + path.string() + "' is a folder; give a file name (inside it, or another)");
  }
  if (!fs::is_directory(parent, ec)) {
    throw ConfigError(what + " '" + path.string() + "' is in folder '" + parent.string() +
                      "', which does not exist; create it first or choose another path");
  }
  if (::access(parent.c_str(), W_OK) != 0) {
    throw ConfigError(what + " '" + path.string() + "' is in folder '" + parent.string() +
                      "', which is not writable; choose another path");
  }
}

}  // namespace torchfit
