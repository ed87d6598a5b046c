// Data-parallel collectives over c10d (TCPStore rendezvous, ProcessGroupGloo) and the local launcher.
#include "torchfit/distributed.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>
#include <cstdlib>
#include <limits>

#include "torchfit/errors.hpp"
#include "torchfit/log.hpp"

#ifdef TORCHFIT_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace torchfit {

void Communicator::all_reduce_sum(torch::Tensor& t) {
  std::vector<torch::Tensor> one{t};
  all_reduce_sum(one);
  if (!one[0].is_same(t)) t.copy_(one[0]);
}

bool Communicator::any(bool flag) {
  auto t = torch::full({1}, flag ? 1.0 : 0.0, torch::kDouble);
  all_reduce_sum(t);
  return t.item<double>() > 0;
}

namespace {

int env_int(const char* name, int fallback, int low, int high) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < low || v > high) {
    throw ConfigError(std::string(name) + " must be a whole number from " + std::to_string(low) + " to " +
                      std::to_string(high) + ", got '" + text + "'");
  }
  return static_cast<int>(v);
}

}  // namespace

std::optional<DistributedOptions> distributed_from_env() {
  if (!std::getenv("WORLD_SIZE")) return std::nullopt;
  DistributedOptions o;
  o.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  o.rank = env_int("RANK", 0, 0, o.world_size - 1);
  o.local_rank = env_int("LOCAL_RANK", o.rank, 0, 1 << 16);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) o.master_addr = addr;
  o.master_port = env_int("MASTER_PORT", o.master_port, 1, 65535);
  return o;
}

#ifdef TORCHFIT_WITH_GLOO

bool distributed_available() { return true; }

namespace {

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(const DistributedOptions& o) : rank_(o.rank), world_(o.world_size) {
    const std::string where = "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(o.master_port);
      so.isServer = o.rank == 0;
      so.numWorkers = static_cast<std::size_t>(o.world_size);
      so.waitWorkers = true;
      so.timeout = o.timeout;
      store_ = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
      auto options = c10d::ProcessGroupGloo::Options::create(o.timeout);
      // Each process binds its own address: loopback for a run on one machine, else the
      // interface GLOO_SOCKET_IFNAME names, else the address this machine's name resolves to.
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(o.master_addr)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, o.rank, o.world_size, options);
    } catch (const std::exception& e) {
      throw DistributedError(where + " could not join the others at " + o.master_addr + ":" +
                             std::to_string(o.master_port) + " within " + std::to_string(o.timeout.count() / 1000) +
                             " s: " + first_line(e.what()) +
                             " (are all processes started, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?)");
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    std::vector<std::vector<at::Tensor>> args;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    args.reserve(tensors.size());
    for (auto& t : tensors) {
      if (!t.is_contiguous()) t = t.contiguous();
      args.push_back({t});
    }
    run([&] {
      for (auto& a : args) works.push_back(group_->allreduce(a));
      for (auto& w : works) w->wait();
    });
  }

  torch::Tensor all_gather_rows(const torch::Tensor& t) override {
    const auto device = t.device();
    auto local = t.to(torch::kCPU).contiguous();
    // First the row counts, then the rows padded to the largest count.
    std::vector<std::vector<at::Tensor>> count_out(1);
    std::vector<at::Tensor> count_in{torch::full({1}, local.size(0), torch::kLong)};
    for (int r = 0; r < world_; ++r) count_out[0].push_back(torch::empty({1}, torch::kLong));
    run([&] { group_->allgather(count_out, count_in)->wait(); });
    int64_t most = 0;
    std::vector<int64_t> counts;
    for (const auto& c : count_out[0]) {
      counts.push_back(c.item<int64_t>());
      most = std::max(most, counts.back());
    }
    auto sizes = local.sizes().vec();
    sizes[0] = most;
    auto padded = torch::zeros(sizes, local.options());
    if (local.size(0) > 0) padded.narrow(0, 0, local.size(0)).copy_(local);
    std::vector<std::vector<at::Tensor>> out(1);
    std::vector<at::Tensor> in{padded};
    for (int r = 0; r < world_; ++r) out[0].push_back(torch::empty(sizes, local.options()));
    run([&] { group_->allgather(out, in)->wait(); });
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < world_; ++r) parts.push_back(out[0][r].narrow(0, 0, counts[r]));
    return torch::cat(parts, 0).to(device);
  }

  void broadcast(std::vector<torch::Tensor>& tensors, int root) override {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<at::Tensor> args;
    for (auto& t : tensors) args.push_back(t.is_contiguous() ? t : t.contiguous());
    run([&] {
      for (auto& a : args) {
        std::vector<at::Tensor> one{a};
        group_->broadcast(one, opts)->wait();
      }
    });
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!args[i].is_same(tensors[i])) tensors[i].copy_(args[i]);
    }
  }

 private:
  static std::string first_line(const std::string& text) {
    const auto nl = text.find('\n');
    return nl == std::string::npos ? text : text.substr(0, nl);
  }

  template <typename Body>
  void run(Body&& body) {
    try {
      body();
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(rank_) + ": a collective with the other processes failed: " +
                             first_line(e.what()) + " (another process stopped, crashed or did not answer in time)");
    }
  }

  int rank_, world_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::shared_ptr<Communicator> connect(const DistributedOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    throw ConfigError("rank " + std::to_string(options.rank) + " does not exist in a world of " +
                      std::to_string(options.world_size));
  }
  return std::make_shared<GlooCommunicator>(options);
}

#else

bool distributed_available() { return false; }

std::shared_ptr<Communicator> connect(const DistributedOptions&) {
  throw DistributedError(
      "this torchfit was built without c10d's Gloo backend (its LibTorch lacks it, or libgloo-dev was missing at "
      "build time); data-parallel training is not available");
}

#endif

// ---- GradientAverager ----------------------------------------------------------------------

GradientAverager::GradientAverager(std::shared_ptr<Communicator> comm, std::vector<torch::Tensor> params,
                                   int64_t bucket_bytes)
    : comm_(std::move(comm)), params_(std::move(params)) {
  // Consecutive parameters of one dtype and device share a bucket until it holds bucket_bytes.
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && bytes + size <= bucket_bytes &&
                      params_[buckets_.back().front()].dtype() == p.dtype() &&
                      params_[buckets_.back().front()].device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().push_back(i);
    bytes += size;
  }
}

std::vector<double> GradientAverager::average(const std::vector<double>& extra) {
  std::vector<torch::Tensor> flats;
  flats.reserve(buckets_.size() + 1);
  torch::NoGradGuard no_grad;
  for (const auto& bucket : buckets_) {
    std::vector<torch::Tensor> grads;
    grads.reserve(bucket.size());
    for (const auto i : bucket) {
      auto& p = params_[i];
      // A parameter without a gradient here may have one elsewhere: it takes part as zeros.
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad().reshape({-1}));
    }
    flats.push_back(torch::cat(grads));
  }
  if (!extra.empty()) flats.push_back(torch::tensor(extra, torch::kDouble));
  comm_->all_reduce_sum(flats);
  const double scale = 1.0 / static_cast<double>(comm_->world_size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t offset = 0;
    flats[b].mul_(scale);
    for (const auto i : buckets_[b]) {
      auto& g = params_[i].mutable_grad();
      const auto n = g.numel();
      g.copy_(flats[b].narrow(0, offset, n).view_as(g));
      offset += n;
    }
  }
  std::vector<double> summed;
  if (!extra.empty()) {
    const auto e = flats.back().contiguous();
    summed.assign(e.data_ptr<double>(), e.data_ptr<double>() + e.numel());
  }
  return summed;
}

// ---- launch_workers: `torchfit train --nproc N` -----------------------------------------------

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

}  // namespace torchfit
