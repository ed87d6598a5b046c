// Running the built torchfit binary from tests: captured output, exit codes, background runs.
#pragma once

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>

#include "../support.hpp"

namespace test {

struct Result {
  int rc = -1;
  std::string out, err;
};

/// Exit code as a shell reports it: the code, or 128 + the signal that ended the process.
inline int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

/// Runs `[env] torchfit <args>` in `dir` with stdout and stderr captured (neither is a terminal).
/// `prefix` goes before the command (environment variables, `ulimit -f N;`).
inline Result run_torchfit(const std::string& args, const fs::path& dir, const std::string& prefix = "") {
  const auto out = dir / ".stdout", err = dir / ".stderr";
  const std::string cmd = "cd '" + dir.string() + "' && " + prefix + " '" TORCHFIT_BINARY "' " + args + " >'" +
                          out.string() + "' 2>'" + err.string() + "' </dev/null";
  // With a prefix, through bash (ulimit -f counts KiB there); the command must then hold no '"'.
  const int status = std::system(prefix.empty() ? cmd.c_str() : ("bash -c \"" + cmd + "\"").c_str());
  Result r{exit_code(status), read_file(out), read_file(err)};
  fs::remove(out);
  fs::remove(err);
  BOOST_TEST_MESSAGE("torchfit " << args << " -> " << r.rc << "\n" << r.err);
  return r;
}

/// Starts `torchfit <args>` in `dir` in the background (output to dir/.stdout, dir/.stderr);
/// returns its process id, for kill() and finish().
inline pid_t start_torchfit(const std::string& args, const fs::path& dir, const std::string& env = "") {
  const std::string cmd = "cd '" + dir.string() + "' && exec env " + env + " '" TORCHFIT_BINARY "' " + args +
                          " >'" + (dir / ".stdout").string() + "' 2>'" + (dir / ".stderr").string() + "' </dev/null";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// Waits for a process started by start_torchfit and collects its output.
inline Result finish(pid_t pid, const fs::path& dir) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  Result r{exit_code(status), read_file(dir / ".stdout"), read_file(dir / ".stderr")};
  BOOST_TEST_MESSAGE("background torchfit -> " << r.rc << "\n" << r.err);
  return r;
}

inline bool has(const std::string& text, const std::string& part) {
  BOOST_TEST_INFO("looking for: " << part << "\nin: " << text);
  return text.find(part) != std::string::npos;
}

inline std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.insert(f.path().filename().string());
  return names;
}

}  // namespace test
