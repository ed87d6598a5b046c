// `torchfit train --nproc N`: the local launcher (fork + exec of this same binary).
#include "launch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include <torchfit/errors.hpp>

namespace torchfit::cli {

namespace {

std::vector<pid_t> g_workers;  // read by the signal handler

void forward(int signal) {
  for (const pid_t pid : g_workers) {
    if (pid > 0) ::kill(pid, signal);
  }
}

// A port nobody listens on now (the kernel's choice); rank 0's store binds it right after.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

int launch_workers(int argc, char** argv, int nproc, std::chrono::seconds grace) {
  const std::string port = std::to_string(free_port());
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(nproc)));
  std::cout.flush();
  std::cerr.flush();
  g_workers.assign(static_cast<size_t>(nproc), 0);
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      forward(SIGKILL);
      throw Error(std::string("cannot start worker process: ") + std::strerror(errno));
    }
    if (pid == 0) {
      // Its own process group: a Ctrl-C reaches the launcher alone, which passes it on once
      // (a worker that got it twice would take the second as "exit now").
      ::setpgid(0, 0);
      const std::string r = std::to_string(rank);
      ::setenv("RANK", r.c_str(), 1);
      ::setenv("LOCAL_RANK", r.c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      // Like torchrun: the machine's cores shared out, unless the user chose a thread count.
      if (!std::getenv("OMP_NUM_THREADS")) ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
      std::vector<char*> args(argv, argv + argc);
      args.push_back(nullptr);
      ::execv("/proc/self/exe", args.data());
      std::cerr << "torchfit: error: cannot start worker " << rank << ": " << std::strerror(errno) << std::endl;
      ::_exit(127);
    }
    g_workers[static_cast<size_t>(rank)] = pid;
  }
  struct sigaction action {};
  action.sa_handler = forward;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  int first_failure = 0, failed_rank = -1, running = nproc;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "torchfit: error: worker processes still running " << grace.count() << " s after rank "
                  << failed_rank << " failed; killing them" << std::endl;
        forward(SIGKILL);
        deadline = std::chrono::steady_clock::time_point::max();
      }
      ::usleep(20000);
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t r = 0; r < g_workers.size(); ++r) {
      if (g_workers[r] != pid) continue;
      g_workers[r] = 0;
      --running;
      const int code = exit_code(status);
      if (code != 0 && first_failure == 0) {
        first_failure = code;
        failed_rank = static_cast<int>(r);
        deadline = std::chrono::steady_clock::now() + grace;
      }
      if (code != 0 && code != 130 && code != 143) {  // an interrupted run says so itself
        std::cerr << "torchfit: rank " << r << " of " << nproc << " exited with "
                  << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status)) : std::to_string(code))
                  << std::endl;
      }
    }
  }
  return first_failure;
}

}  // namespace torchfit::cli
