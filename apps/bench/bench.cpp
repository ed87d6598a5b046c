// torchfit_bench: fit() against a hand-written LibTorch loop, side by side in one process.
//
//   A  hand-written loop (hand_loop.hpp)
//   B  fit() with no callbacks (the acc/accuracy metric from the metrics plugin)
//   C  fit() with the runner's default plugins loaded through the registry
//   D  fit() with 16 no-op callback plugins (ring only)
//
// Repetitions are interleaved and rotated (A B C D, B C D A, ...); medians and ratios to A are reported,
// then peak RSS, plugin discovery, checkpoint write/read and per-hook dispatch cost.
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include <boost/program_options.hpp>
#include <torchfit/torchfit.hpp>

#include "hand_loop.hpp"

namespace tf = torchfit;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

struct Workload {
  std::string name;
  tf::TensorDataset train, val;
  int64_t epochs, batch_size, classes;
  double lr;
  std::string metric;
  std::function<torch::nn::Sequential()> make_net;
};

struct Setup {
  tf::Registry* registry;
  fs::path tmp;
  torch::Device device = torch::kCPU;
  tf::Precision precision = tf::Precision::Float32;
};

std::shared_ptr<tf::Callback> callback(tf::Registry& reg, const std::string& name, std::vector<std::string> args) {
  return reg.make_callback(name, reg.parse_options(reg.find(name, tf::PluginKind::Callback), args));
}

double run_hand(const Workload& w, uint64_t seed, const Setup& s, double* acc) {
  torch::manual_seed(seed);
  auto net = w.make_net();
  net->to(s.device);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(w.lr));
  // The data moves to the device inside the timing, as fit() moves it inside its own.
  const auto start = Clock::now();
  const auto train = w.train.to(s.device), val = w.val.to(s.device);
  auto r = bench::hand_loop(net, opt, train.features(), train.targets(), val.features(), val.targets(), w.epochs,
                            w.batch_size, seed, w.classes, [&] { return tf::AutocastGuard(s.precision, s.device); });
  const double t = seconds_since(start);
  *acc = r.val_acc;
  return t;
}

double run_fit(const Workload& w, uint64_t seed, const Setup& s, char variant, double* acc) {
  torch::manual_seed(seed);
  auto net = w.make_net();
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(w.lr));
  tf::Loss loss = w.classes == 1 ? tf::Loss(torch::nn::BCEWithLogitsLoss()) : tf::Loss(torch::nn::CrossEntropyLoss());
  tf::Trainer trainer(net, loss, s.registry->make_metrics({w.metric}), opt);
  trainer.to(s.device);
  tf::Callbacks callbacks;
  const std::string monitor = "--monitor=val_" + w.metric;
  if (variant == 'C') {
    callbacks = {callback(*s.registry, "early_stopping", {monitor, "--patience=100000"}),
                 callback(*s.registry, "model_checkpoint", {monitor, "--ckpt-path=" + (s.tmp / "ckpt").string()}),
                 callback(*s.registry, "progress_bar", {"--stream=" + (s.tmp / "progress.log").string()}),
                 callback(*s.registry, "lr_monitor", {})};
  } else if (variant == 'D') {
    for (int i = 0; i < 16; ++i) callbacks.push_back(callback(*s.registry, "noop", {}));
  }
  tf::DataLoader train(w.train, tf::LoaderOptions(w.batch_size).shuffle(true).seed(seed));
  tf::DataLoader val(w.val, w.batch_size);
  const auto start = Clock::now();
  auto h = trainer.fit(train, val, tf::FitOptions().epochs(w.epochs).callbacks(callbacks).precision(s.precision));
  const double t = seconds_since(start);
  *acc = h.back().at("val_" + w.metric);
  return t;
}

// Runs a program and returns (wall seconds, peak RSS in MiB) of the child.
std::pair<double, double> run_child(const std::vector<std::string>& argv) {
  const auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  int status = 0;
  struct rusage usage {};
  ::wait4(pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " failed (status " + std::to_string(status) + ")");
  }
  return {seconds_since(start), static_cast<double>(usage.ru_maxrss) / 1024.0};
}

void report(const Workload& w, const std::map<char, std::vector<double>>& times, const std::map<char, double>& acc) {
  const double a = median(times.at('A'));
  std::printf("\n%s: %lld epochs, %lld train samples, batch %lld, %zu repetitions\n", w.name.c_str(),
              static_cast<long long>(w.epochs), static_cast<long long>(w.train.size()),
              static_cast<long long>(w.batch_size), times.at('A').size());
  std::printf("  %-44s %10s %8s %9s\n", "variant", "median s", "vs A", "val_acc");
  const std::map<char, std::string> names = {{'A', "A hand-written LibTorch loop"},
                                             {'B', "B fit(), no callbacks"},
                                             {'C', "C fit(), default plugins from the registry"},
                                             {'D', "D fit(), 16 no-op callback plugins"}};
  for (const auto& [v, t] : times) {
    std::printf("  %-44s %10.4f %8.3f %9.4f\n", names.at(v).c_str(), median(t), median(t) / a, acc.at(v));
  }
  if (times.count('D')) std::printf("  D/B = %.3f\n", median(times.at('D')) / median(times.at('B')));
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("torchfit_bench options");
  desc.add_options()("help,h", "this help")                                                        //
      ("reps", po::value<int>()->default_value(7), "interleaved repetitions per variant")            //
      ("epochs", po::value<int64_t>()->default_value(100), "ring epochs")                          //
      ("mlp-epochs", po::value<int64_t>()->default_value(3), "MLP epochs (0: skip the MLP)")        //
      ("mlp-samples", po::value<int64_t>()->default_value(60000), "MLP training samples")          //
      ("smoke", "tiny sizes, one repetition: checks that the benchmark runs")                     //
      ("device", po::value<std::string>()->default_value("cpu"), "cpu, cuda or cuda:N")            //
      ("precision", po::value<std::string>()->default_value("32"), "32 or bf16-mixed (both loops)")  //
      ("plugin-dir", po::value<std::string>()->default_value(TORCHFIT_BENCH_TEST_PLUGINS), "folder with noop.so")  //
      ("runner", po::value<std::string>()->default_value(TORCHFIT_BENCH_RUNNER), "the torchfit binary")  //
      ("hand-program", po::value<std::string>()->default_value(TORCHFIT_BENCH_HAND), "the hand loop as a program");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "torchfit_bench: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result line as it comes, also into a pipe
  const bool smoke = vm.count("smoke");
  const int reps = smoke ? 1 : vm["reps"].as<int>();
  const int64_t ring_epochs = smoke ? 2 : vm["epochs"].as<int64_t>();
  const int64_t mlp_epochs = smoke ? 1 : vm["mlp-epochs"].as<int64_t>();
  const int64_t mlp_samples = smoke ? 512 : vm["mlp-samples"].as<int64_t>();

  spdlog::set_level(spdlog::level::warn);  // the banner and best-value messages would interleave
  auto dirs = tf::Registry::search_path({vm["plugin-dir"].as<std::string>()});
  tf::Registry registry(dirs);
  const fs::path tmp = fs::temp_directory_path() / ("torchfit-bench-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  Setup setup{&registry, tmp};
  try {
    setup.device = tf::parse_device(vm["device"].as<std::string>());
    setup.precision = tf::parse_precision(vm["precision"].as<std::string>());
    if (setup.precision == tf::Precision::FP16Mixed) {
      throw tf::ConfigError("--precision 16-mixed needs loss scaling, which the hand-written loop does not do");
    }
    tf::AutocastGuard check(setup.precision, setup.device);
  } catch (const std::exception& e) {
    std::cerr << "torchfit_bench: " << e.what() << "\n";
    return 2;
  }

  std::printf("torchfit %s, LibTorch %s, %d intra-op threads, %u cores, device %s, precision %s\n",
              tf::version().c_str(), tf::compat::torch_version().c_str(), torch::get_num_threads(),
              std::thread::hardware_concurrency(), setup.device.str().c_str(), tf::precision_name(setup.precision));

  auto ring_model =
      registry.make_model("dnn_binary", registry.parse_options(registry.find("dnn_binary", tf::PluginKind::Model)));
  auto ring_data = ring_model->make_data(2);
  std::vector<Workload> workloads = {
      {"ring DNN (overhead-bound)", ring_data.train, ring_data.val, ring_epochs, 100, 1, 0.001, "acc", bench::ring_net}};
  if (mlp_epochs > 0) {
    auto gen = tf::compat::make_generator(7);
    const int64_t n = mlp_samples + mlp_samples / 6;
    auto x = torch::randn({n, 784}, gen);
    auto y = x.matmul(torch::randn({784, 10}, gen)).argmax(1);
    workloads.push_back({"MLP 784-512-256-10 (compute-bound)", tf::TensorDataset(x.narrow(0, 0, mlp_samples), y.narrow(0, 0, mlp_samples)),
                         tf::TensorDataset(x.narrow(0, mlp_samples, n - mlp_samples), y.narrow(0, mlp_samples, n - mlp_samples)),
                         mlp_epochs, 256, 10, 0.001, "accuracy", bench::mlp_net});
  }

  for (const auto& w : workloads) {
    const std::string variants = w.classes == 1 ? "ABCD" : "ABC";
    std::map<char, std::vector<double>> times;
    std::map<char, double> acc;
    double scratch = 0;
    run_hand(w, 2, setup, &scratch);  // warm-up: first-touch allocations, thread pool start
    for (int r = 0; r < reps; ++r) {
      // Rotate the order each repetition so that no variant always runs right after another.
      for (size_t i = 0; i < variants.size(); ++i) {
        const char v = variants[(i + static_cast<size_t>(r)) % variants.size()];
        times[v].push_back(v == 'A' ? run_hand(w, 2, setup, &acc[v]) : run_fit(w, 2, setup, v, &acc[v]));
      }
    }
    report(w, times, acc);
    if (w.classes == 1) {
      // Per-hook dispatch: D's extra time over B, per callback per hook call.
      const int64_t train_batches = (w.train.size() + w.batch_size - 1) / w.batch_size;
      const int64_t val_batches = (w.val.size() + w.batch_size - 1) / w.batch_size;
      const int64_t calls = 16 * (2 + w.epochs * (6 + 5 * train_batches + 2 * val_batches));
      std::printf("  per-hook dispatch: %.1f ns per callback per hook (D-B over %lld calls)\n",
                  (median(times.at('D')) - median(times.at('B'))) * 1e9 / static_cast<double>(calls),
                  static_cast<long long>(calls));
    }
  }

  // Checkpoint write and read, on the MLP's net (535,818 parameters, 2 MiB).
  {
    torch::manual_seed(1);
    tf::Net net = bench::mlp_net();
    std::vector<double> write, read;
    for (int i = 0; i < std::max(3, reps); ++i) {
      auto start = Clock::now();
      tf::save_weights(net, tmp / "mlp.ckpt");
      write.push_back(seconds_since(start));
      start = Clock::now();
      tf::load_weights(net, tmp / "mlp.ckpt");
      read.push_back(seconds_since(start));
    }
    std::printf("\ncheckpoint of the MLP (%.1f MiB, fsync included): write %.2f ms, read %.2f ms (medians)\n",
                static_cast<double>(fs::file_size(tmp / "mlp.ckpt")) / (1024.0 * 1024.0), median(write) * 1e3,
                median(read) * 1e3);
  }

  // Whole programs: plugin discovery, and peak RSS of the runner against the hand loop.
  const auto runner = vm["runner"].as<std::string>();
  // Cold: LibTorch and every plugin loaded, the listing cache written; warm: answered from
  // the cache, which the launcher checks against every plugin file (apps/torchfit/plugin_cache.hpp).
  ::setenv("XDG_CACHE_HOME", (tmp / "cache").c_str(), 1);
  std::vector<double> cold, warm;
  for (int i = 0; i < std::max(3, reps); ++i) {
    std::error_code ec;
    fs::remove_all(tmp / "cache", ec);
    cold.push_back(run_child({runner, "plugins"}).first);
    warm.push_back(run_child({runner, "plugins"}).first);
  }
  std::printf("torchfit plugins (start, discover and describe every plugin, exit): %.3f s cold, %.3f s from the "
              "listing cache (medians)\n", median(cold), median(warm));
  const auto epochs_arg = std::to_string(ring_epochs);
  auto [hand_s, hand_rss] = run_child({vm["hand-program"].as<std::string>(), epochs_arg});
  fs::current_path(tmp);
  // On the CPU, like the hand-written program, whatever --device the loops above ran on.
  auto [fit_s, fit_rss] = run_child({runner, "train", "--model", "dnn_binary", "--epochs", epochs_arg, "--patience",
                                     "100000", "--monitor", "val_acc", "--quiet", "--device", "cpu"});
  std::printf("peak RSS, ring for %s epochs: torchfit train %.1f MiB, hand-written program %.1f MiB, ratio %.3f\n",
              epochs_arg.c_str(), fit_rss, hand_rss, fit_rss / hand_rss);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}
