// torchfit: the command-line runner's launcher. It answers --version, and `torchfit plugins`
// from the plugin folders' indexes, without loading LibTorch (about 0.6 s of every start);
// everything else goes to the runner library libtorchfit_cli (cli_main.cpp), loaded on demand.
#include <dlfcn.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "plugin_cache.hpp"

namespace {

// The runner library, beside the launcher's own folder (bin/ -> lib/, in the build and the
// install tree alike).
std::string cli_library() {
  const std::string exe = torchfit::cli::program_path();
  return (exe.empty() ? std::string("./") : exe.substr(0, exe.rfind('/') + 1)) + TORCHFIT_CLI_LIBRARY;
}

// SIGINT or SIGTERM before a command installs its own handling (train does, once its settings
// are saved and training is about to start): a message and exit 128 + signal, at once. Loading
// LibTorch alone takes about half a second, in which the default action would end the process
// without a word. Only async-signal-safe calls here.
extern "C" void on_early_signal(int signal) {
  static const char sigint[] = "\ntorchfit: interrupted by SIGINT\n";
  static const char sigterm[] = "\ntorchfit: interrupted by SIGTERM\n";
  const ssize_t ignored = signal == SIGINT ? ::write(STDERR_FILENO, sigint, sizeof sigint - 1)
                                           : ::write(STDERR_FILENO, sigterm, sizeof sigterm - 1);
  (void)ignored;
  ::_exit(128 + signal);
}

void handle_early_signals() {
  struct sigaction action {};
  action.sa_handler = on_early_signal;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM}) {
    struct sigaction previous {};
    // A signal ignored by whoever started us (nohup, a shell's background job) stays ignored.
    if (::sigaction(signal, nullptr, &previous) == 0 && previous.sa_handler == SIG_IGN) continue;
    ::sigaction(signal, &action, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace torchfit::cli;
  handle_early_signals();
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::cout << version_line() << "\n";
    return 0;
  }
  if (const auto folders = plain_listing_folders(argc, argv)) {
    std::vector<FolderListing> listings;
    for (const auto& folder : *folders) {
      std::error_code ec;
      if (!std::filesystem::is_directory(folder, ec)) {
        listings.push_back({folder, false, {}, {}});
      } else if (auto listing = read_index(folder)) {
        listings.push_back(std::move(*listing));
      } else {
        break;  // a folder without a valid index: the runner lists them all
      }
    }
    if (listings.size() == folders->size()) {
      std::cout << format_listing(listings, false);
      return 0;
    }
  }
  const std::string library = cli_library();
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!handle) {
    std::cerr << "torchfit: error: cannot load the runner library: " << ::dlerror()
              << " (reinstall torchfit, or rebuild it)\n";
    return 1;
  }
  using Main = int (*)(int, char**);
  auto run = reinterpret_cast<Main>(::dlsym(handle, "torchfit_cli_main"));
  if (!run) {
    std::cerr << "torchfit: error: " << library << " has no torchfit_cli_main (a mismatched install?)\n";
    return 1;
  }
  return run(argc, argv);
}
