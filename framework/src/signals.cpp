// Stop signals: a flag set by the first SIGINT/SIGTERM, an immediate exit on the second.
#include "torchfit/signals.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace torchfit {

namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");

extern "C" void on_stop_signal(int signal) {
  if (g_signal.exchange(signal) != 0) {
    // Second signal: the user insists. Only async-signal-safe calls from here.
    static const char message[] = "\ntorchfit: second signal, exiting now (saved files are intact)\n";
    const ssize_t ignored = ::write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    ::_exit(128 + signal);
  }
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // reads and writes in progress carry on
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGXFSZ, &ignore, nullptr);
}

int stop_signal() noexcept { return g_signal.load(std::memory_order_relaxed); }

void clear_stop_signal() noexcept { g_signal.store(0); }

const char* signal_name(int signal) noexcept {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case 0:
      return "no signal";
    default:
      return "a signal";
  }
}

}  // namespace torchfit
