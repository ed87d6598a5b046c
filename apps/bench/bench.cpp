// torchfit_bench: fit() against a hand-written LibTorch loop, side by side in one process.
//
//   A  hand-written loop (hand_loop.hpp)
//   B  fit() with no callbacks (the acc/accuracy metric from the metrics plugin)
//   C  fit() with the runner's default plugins loaded through the registry
//   D  fit() with 16 no-op callback plugins (ring only)
//
// Then the CNN on Fashion-MNIST (the fashion_mnist and cnn plugins, the shipped augmentation in
// the loader's workers) against a hand loop over batches ready in memory.
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

// Under valgrind --tool=callgrind (scripts/bench-callgrind.sh), each timed run also dumps its
// instruction counts; without valgrind these requests cost a few instructions and do nothing.
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

#include "hand_loop.hpp"

namespace tf = torchfit;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// One timed run: wall seconds, and the CPU seconds (user + system, all threads: background
// writers and OpenBLAS workers included) and minor page faults of this process over the same span.
struct Sample {
  double wall = 0, cpu = 0, faults = 0;
};

class Meter {
 public:
  explicit Meter(std::string label) : label_(std::move(label)), start_(Clock::now()), usage_(usage()) {
    CALLGRIND_ZERO_STATS;
  }
  Sample stop() const {
    CALLGRIND_DUMP_STATS_AT(label_.c_str());
    const auto end = usage();
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
    return {seconds_since(start_),
            seconds(end.ru_utime) - seconds(usage_.ru_utime) + seconds(end.ru_stime) - seconds(usage_.ru_stime),
            static_cast<double>(end.ru_minflt - usage_.ru_minflt)};
  }

 private:
  static rusage usage() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return u;
  }
  std::string label_;
  Clock::time_point start_;
  rusage usage_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

struct Workload {
  std::string key, name;
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

Sample run_hand(const Workload& w, uint64_t seed, const Setup& s, double* acc, const char* label = "A") {
  torch::manual_seed(seed);
  auto net = w.make_net();
  net->to(s.device);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(w.lr));
  // The data moves to the device inside the timing, as fit() moves it inside its own.
  const Meter meter(w.key + " " + label);
  const auto train = w.train.to(s.device), val = w.val.to(s.device);
  auto r = bench::hand_loop(net, opt, train.features(), train.targets(), val.features(), val.targets(), w.epochs,
                            w.batch_size, seed, w.classes, [&] { return tf::AutocastGuard(s.precision, s.device); });
  const Sample t = meter.stop();
  *acc = r.val_acc;
  return t;
}

Sample run_fit(const Workload& w, uint64_t seed, const Setup& s, char variant, double* acc) {
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
  const Meter meter(w.key + " " + variant);
  auto h = trainer.fit(train, val, tf::FitOptions().epochs(w.epochs).callbacks(callbacks).precision(s.precision));
  const Sample t = meter.stop();
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

using Samples = std::map<char, std::vector<Sample>>;

double median_of(const Samples& samples, char variant, double Sample::*field) {
  std::vector<double> v;
  for (const auto& s : samples.at(variant)) v.push_back(s.*field);
  return median(v);
}

// The median over repetitions of `variant`'s wall time divided by `base`'s in the same repetition.
double paired_ratio(const Samples& samples, char variant, char base) {
  std::vector<double> v;
  const auto& runs = samples.at(variant);
  for (size_t r = 0; r < runs.size(); ++r) v.push_back(runs[r].wall / samples.at(base)[r].wall);
  return median(v);
}

// Medians of each variant, their ratios to A's median, and the median of the per-repetition
// ratios to A (each repetition runs every variant back to back, so a slow spell of the machine
// that spans a repetition cancels out of its ratios).
void report(const Workload& w, const Samples& samples, const std::map<char, double>& acc) {
  const auto& first = samples.begin()->second;
  std::printf("\n%s: %lld epochs, %lld train samples, batch %lld, %zu repetitions\n", w.name.c_str(),
              static_cast<long long>(w.epochs), static_cast<long long>(w.train.size()),
              static_cast<long long>(w.batch_size), first.size());
  std::printf("  %-44s %8s %6s %7s %8s %6s %8s %8s\n", "variant", "wall s", "vs A", "paired", "CPU s", "vs A",
              "faults", "val_acc");
  const std::map<char, std::string> names = {{'A', "A hand-written LibTorch loop"},
                                             {'B', "B fit(), no callbacks"},
                                             {'C', "C fit(), default plugins from the registry"},
                                             {'D', "D fit(), 16 no-op callback plugins"}};
  const bool has_a = samples.count('A') > 0;
  const double wall_a = has_a ? median_of(samples, 'A', &Sample::wall) : 0;
  const double cpu_a = has_a ? median_of(samples, 'A', &Sample::cpu) : 0;
  for (const auto& entry : samples) {
    const char v = entry.first;
    const double wall = median_of(samples, v, &Sample::wall), cpu = median_of(samples, v, &Sample::cpu);
    if (has_a) {
      std::printf("  %-44s %8.4f %6.3f %7.3f %8.4f %6.3f %8.0f %8.4f\n", names.at(v).c_str(), wall, wall / wall_a,
                  paired_ratio(samples, v, 'A'), cpu, cpu / cpu_a, median_of(samples, v, &Sample::faults), acc.at(v));
    } else {
      std::printf("  %-44s %8.4f %6s %7s %8.4f %6s %8.0f %8.4f\n", names.at(v).c_str(), wall, "-", "-", cpu, "-",
                  median_of(samples, v, &Sample::faults), acc.at(v));
    }
  }
  if (samples.count('B') && samples.count('D')) {
    std::printf("  D/B = %.3f wall (paired %.3f), %.3f CPU\n",
                median_of(samples, 'D', &Sample::wall) / median_of(samples, 'B', &Sample::wall),
                paired_ratio(samples, 'D', 'B'),
                median_of(samples, 'D', &Sample::cpu) / median_of(samples, 'B', &Sample::cpu));
  }
}

// ---- images: Fashion-MNIST through the dataset and model plugins the runner uses ----

// When Debian's dataset-fashion-mnist is not installed: 28x28 grey images kept as bytes, a
// bright block whose place is the class on noise (learnable, so val_acc means something).
struct ByteImages : tf::Dataset {
  torch::Tensor images, labels;  // [N, 1, 28, 28] uint8, [N] int64
  int64_t size() const override { return images.size(0); }
  tf::Sample get(int64_t i) const override {
    tf::Sample s;
    s.add_input("image", images[i].clone());
    s.add_target("label", labels[i].clone());
    return s;
  }
  std::vector<std::string> classes() const override { return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}; }
  std::string name() const override { return "synthetic images"; }
};

std::shared_ptr<ByteImages> byte_images(int64_t n, uint64_t seed) {
  auto gen = tf::compat::make_generator(seed);
  auto ds = std::make_shared<ByteImages>();
  ds->labels = torch::randint(0, 10, {n}, gen, torch::kLong);
  auto img = torch::randint(0, 120, {n, 1, 28, 28}, gen, torch::kLong);
  const auto* lab = ds->labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = 2 + (lab[i] / 5) * 12, c = 1 + (lab[i] % 5) * 5;
    img[i][0].narrow(0, r, 8).narrow(1, c, 6).add_(130);
  }
  ds->images = img.clamp(0, 255).to(torch::kByte);
  return ds;
}

// Time between one training batch's end and the next one's start (the loader's next batch,
// waited for) and from a batch's start to its end (the step), summed over the fit.
struct WaitMeter : tf::Callback {
  Clock::time_point mark;
  double wait = 0, step = 0;
  void on_train_epoch_begin(tf::Context&) override { mark = Clock::now(); }
  void on_train_batch_begin(tf::Context&) override {
    const auto t = Clock::now();
    wait += std::chrono::duration<double>(t - mark).count();
    mark = t;
  }
  void on_train_batch_end(tf::Context&) override {
    const auto t = Clock::now();
    step += std::chrono::duration<double>(t - mark).count();
    mark = t;
  }
};

std::vector<int64_t> first_n(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

// The training subset (the first `samples` images of the train split), validation (the first
// images of the test split, transformed once: the same ready tensors for both loops) and the
// dataset's shipped augmentation.
struct ImageData {
  std::shared_ptr<const tf::Dataset> train;
  tf::TensorDataset val;
  std::vector<tf::Transform> augment;
  std::string source;
};

tf::TensorDataset ready(const std::shared_ptr<const tf::Dataset>& data, std::vector<tf::Transform> transforms) {
  std::vector<torch::Tensor> xs, ys;
  for (const auto& b : tf::DataLoader(data, tf::LoaderOptions(256).transforms(std::move(transforms))).epoch(0)) {
    xs.push_back(b.input());
    ys.push_back(b.target());
  }
  return tf::TensorDataset(torch::cat(xs), torch::cat(ys));
}

ImageData image_data(tf::Registry& registry, int64_t samples, const std::string& folder) {
  const int64_t val_samples = std::max<int64_t>(samples / 6, 128);
  const auto& entry = registry.find("fashion_mnist", tf::PluginKind::Dataset);
  tf::DataRequest train_request, test_request;
  test_request.purpose = tf::DataRequest::Purpose::Evaluate;
  try {
    auto train_plugin = registry.make_dataset("fashion_mnist", registry.parse_options(entry, {"--folder=" + folder}));
    auto test_plugin =
        registry.make_dataset("fashion_mnist", registry.parse_options(entry, {"--folder=" + folder, "--split=test"}));
    auto all = train_plugin->load(train_request);
    auto test = test_plugin->load(test_request);
    return {tf::subset(all, first_n(std::min(samples, all->size()))),
            ready(tf::subset(test, first_n(std::min(val_samples, test->size()))), test_plugin->transforms(false)),
            train_plugin->transforms(true), "Fashion-MNIST (" + folder + ")"};
  } catch (const tf::DataError& e) {
    std::printf("\nimages: no Fashion-MNIST (%s); synthetic images instead\n", e.what());
  }
  // The fashion_mnist plugin's transforms (flip, crop, normalize) suit any 28x28 grey bytes.
  auto plugin = registry.make_dataset("fashion_mnist", registry.parse_options(entry, {"--folder=" + folder}));
  std::shared_ptr<const tf::Dataset> val = byte_images(val_samples, 12);
  return {byte_images(samples, 11), ready(val, plugin->transforms(false)), plugin->transforms(true), "synthetic"};
}

void bench_images(tf::Registry& registry, const Setup& setup, int64_t samples, int64_t epochs, int reps,
                  int64_t workers_fit, const std::string& folder) {
  const auto data = image_data(registry, samples, folder);
  auto model = registry.make_model("cnn", registry.parse_options(registry.find("cnn", tf::PluginKind::Model)));
  model->adapt(*data.train);
  const int64_t batch = model->default_batch_size();
  std::printf("\nimages: CNN (the cnn plugin's default net: conv 32, 64 with batch norm, dense 128, dropout 0.2) on "
              "%lld images of %s, batch %lld, the dataset's augmentation (flip, crop with padding, normalize), "
              "%d repetitions\n",
              static_cast<long long>(data.train->size()), data.source.c_str(), static_cast<long long>(batch), reps);
  // The loader alone: one epoch gathered and transformed, nothing trained.
  for (int64_t workers : {0, 1, 2}) {
    std::vector<double> rate;
    for (int r = 0; r < reps; ++r) {
      tf::DataLoader loader(data.train, tf::LoaderOptions(batch).shuffle(true).seed(3).workers(workers).transforms(data.augment));
      const auto start = Clock::now();
      int64_t n = 0;
      for (const auto& b : loader.epoch(static_cast<uint64_t>(r))) n += b.size();
      rate.push_back(static_cast<double>(n) / seconds_since(start));
    }
    std::printf("  loader, %lld worker%s: %.0f samples/s (median)\n", static_cast<long long>(workers),
                workers == 1 ? "" : "s", median(rate));
  }
  if (epochs <= 0) return;

  // A: the hand loop (its own LibTorch net, the same layers) over batches ready in memory: the
  // augmented images of epoch 0, made before the timing, so A pays for no transform at all.
  // C: fit() on the cnn plugin's net with the runner's default plugins, the augmentation run
  // by the loader's workers while the net trains.
  const auto train_ready = ready(data.train, data.augment);
  std::vector<double> a_wall, c_wall, paired, wait_share;
  double a_acc = 0, c_acc = 0;
  const std::string monitor = "--monitor=val_accuracy";
  for (int r = 0; r < reps + 1; ++r) {  // the first repetition warms up and is not counted
    torch::manual_seed(2);
    auto a_net = bench::cnn_net();
    torch::optim::Adam a_opt(a_net->parameters(), torch::optim::AdamOptions(1e-3));
    Meter a_meter("images A");
    auto hand = bench::hand_loop(a_net, a_opt, train_ready.features(), train_ready.targets(), data.val.features(),
                                 data.val.targets(), epochs, batch, 2, 10);
    const double a = a_meter.stop().wall;

    torch::manual_seed(2);
    auto c_net = model->make_net();
    auto c_opt = std::make_shared<torch::optim::Adam>(c_net.parameters(), torch::optim::AdamOptions(1e-3));
    tf::Trainer trainer(c_net, model->make_loss(), registry.make_metrics({"accuracy"}), c_opt);
    trainer.to(torch::kCPU);
    auto meter = std::make_shared<WaitMeter>();
    const tf::Callbacks callbacks = {
        callback(registry, "early_stopping", {monitor, "--patience=100000"}),
        callback(registry, "model_checkpoint", {monitor, "--ckpt-path=" + (setup.tmp / "cnn.ckpt").string()}),
        callback(registry, "progress_bar", {"--stream=" + (setup.tmp / "progress.log").string()}),
        callback(registry, "lr_monitor", {}), meter};
    tf::DataLoader loader(data.train,
                          tf::LoaderOptions(batch).shuffle(true).seed(2).workers(workers_fit).transforms(data.augment));
    Meter c_meter("images C");
    auto h = trainer.fit(loader, tf::DataLoader(data.val, batch), tf::FitOptions().epochs(epochs).callbacks(callbacks));
    const double c = c_meter.stop().wall;
    if (r == 0) continue;
    a_wall.push_back(a);
    c_wall.push_back(c);
    paired.push_back(c / a);
    wait_share.push_back(meter->wait / meter->step);
    a_acc = hand.val_acc;
    c_acc = h.back().at("val_accuracy");
  }
  const double per_image = median(c_wall) / static_cast<double>(epochs * data.train->size());
  std::printf("  A hand-written loop, batches ready in memory:   %.4f s (val_acc %.4f)\n", median(a_wall), a_acc);
  std::printf("  C fit(), default plugins, augmentation in %lld workers: %.4f s (val_acc %.4f)  C/A %.3f, paired %.3f\n",
              static_cast<long long>(workers_fit), median(c_wall), c_acc, median(c_wall) / median(a_wall),
              median(paired));
  std::printf("  C spent %.2f%% of its step time between steps (waiting for and taking the next batch; median)\n",
              100 * median(wait_share));
  std::printf("  C's time per epoch of the full 60,000 images at this rate: %.1f s (%.3f ms per image, validation "
              "included)\n",
              per_image * 60000, per_image * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("torchfit_bench options");
  desc.add_options()("help,h", "this help")                                                        //
      ("reps", po::value<int>()->default_value(7), "interleaved repetitions per variant")            //
      ("epochs", po::value<int64_t>()->default_value(100), "ring epochs (0: skip the ring)")         //
      ("mlp-epochs", po::value<int64_t>()->default_value(3), "MLP epochs (0: skip the MLP)")        //
      ("mlp-samples", po::value<int64_t>()->default_value(60000), "MLP training samples")          //
      ("variants", po::value<std::string>()->default_value("ABCD"), "which of A B C D to run (D: ring only)")  //
      ("image-epochs", po::value<int64_t>()->default_value(1), "CNN epochs over transformed images (0: the loader's throughput only; -1: skip images)")  //
      ("image-samples", po::value<int64_t>()->default_value(6000), "image training samples")                  //
      ("image-workers", po::value<int64_t>()->default_value(2), "loader workers for fit() over the images")  //
      ("threads", po::value<int>()->default_value(0), "intra-op threads for every variant (0: LibTorch's default)")  //
      ("image-folder", po::value<std::string>()->default_value("/usr/share/datasets/fashion-mnist"),
       "Fashion-MNIST's folder (synthetic images when it is missing)")  //
      ("loops-only", "only the loops: no checkpoint, plugin listing or peak-RSS measures")          //
      ("raw", "also print every timed run")                                                       //
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
  const auto chosen = vm["variants"].as<std::string>();
  if (chosen.empty() || chosen.find_first_not_of("ABCD") != std::string::npos) {
    std::cerr << "torchfit_bench: --variants takes letters from ABCD (A hand loop, B fit(), C default plugins, D no-op "
                 "plugins), e.g. --variants AB; got '" << chosen << "'\n";
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result line as it comes, also into a pipe
  // As the runner does, for every variant alike (TORCHFIT_HOST_ALLOCATOR=system: glibc's defaults).
  const auto heap = tf::tune_host_allocator();
  if (vm["threads"].as<int>() > 0) torch::set_num_threads(vm["threads"].as<int>());
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
  std::printf("host allocator: %s\n", heap.reason.c_str());

  auto ring_model =
      registry.make_model("dnn_binary", registry.parse_options(registry.find("dnn_binary", tf::PluginKind::Model)));
  auto ring_data = ring_model->make_data(2);
  std::vector<Workload> workloads;
  if (ring_epochs > 0) {
    workloads.push_back(
        {"ring", "ring DNN (overhead-bound)", ring_data.train, ring_data.val, ring_epochs, 100, 1, 0.001, "acc", bench::ring_net});
  }
  if (mlp_epochs > 0) {
    auto gen = tf::compat::make_generator(7);
    const int64_t n = mlp_samples + mlp_samples / 6;
    auto x = torch::randn({n, 784}, gen);
    auto y = x.matmul(torch::randn({784, 10}, gen)).argmax(1);
    workloads.push_back({"mlp", "MLP 784-512-256-10 (compute-bound)", tf::TensorDataset(x.narrow(0, 0, mlp_samples), y.narrow(0, 0, mlp_samples)),
                         tf::TensorDataset(x.narrow(0, mlp_samples, n - mlp_samples), y.narrow(0, mlp_samples, n - mlp_samples)),
                         mlp_epochs, 256, 10, 0.001, "accuracy", bench::mlp_net});
  }

  for (const auto& w : workloads) {
    std::string variants;
    for (const char v : std::string("ABCD")) {
      if (chosen.find(v) != std::string::npos && (v != 'D' || w.key == "ring")) variants += v;
    }
    if (variants.empty()) continue;
    Samples times;
    std::map<char, double> acc;
    double scratch = 0;
    run_hand(w, 2, setup, &scratch, "warm-up");  // warm-up: first-touch allocations, thread pool start
    for (int r = 0; r < reps; ++r) {
      // Rotate the order each repetition so that no variant always runs right after another.
      for (size_t i = 0; i < variants.size(); ++i) {
        const char v = variants[(i + static_cast<size_t>(r)) % variants.size()];
        times[v].push_back(v == 'A' ? run_hand(w, 2, setup, &acc[v]) : run_fit(w, 2, setup, v, &acc[v]));
        if (vm.count("raw")) {
          const Sample& t = times[v].back();
          std::printf("  %s rep %d %c: wall %.4f s, CPU %.4f s, %.0f faults\n", w.key.c_str(), r, v, t.wall, t.cpu, t.faults);
        }
      }
    }
    report(w, times, acc);
    if (times.count('B') && times.count('D')) {
      // Per-hook dispatch: D's extra time over B, per callback per hook call.
      const int64_t train_batches = (w.train.size() + w.batch_size - 1) / w.batch_size;
      const int64_t val_batches = (w.val.size() + w.batch_size - 1) / w.batch_size;
      const int64_t calls = 16 * (2 + w.epochs * (6 + 5 * train_batches + 2 * val_batches));
      auto per_call = [&](double Sample::*field) {
        return (median_of(times, 'D', field) - median_of(times, 'B', field)) * 1e9 / static_cast<double>(calls);
      };
      std::printf("  per-hook dispatch: %.1f ns wall, %.1f ns CPU per callback per hook (D-B over %lld calls)\n",
                  per_call(&Sample::wall), per_call(&Sample::cpu), static_cast<long long>(calls));
    }
  }

  if (vm["image-epochs"].as<int64_t>() >= 0 && setup.device.is_cpu()) {
    bench_images(registry, setup, smoke ? 256 : vm["image-samples"].as<int64_t>(),
                 smoke ? 1 : vm["image-epochs"].as<int64_t>(), reps, vm["image-workers"].as<int64_t>(),
                 vm["image-folder"].as<std::string>());
  }

  if (vm.count("loops-only")) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    return 0;
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
  // `torchfit plugins`, three ways (apps/torchfit/plugin_cache.hpp): the first listing after the
  // build or install (the standard folder's own index, empty user cache); a folder nobody
  // indexed (a plugin of the user's: LibTorch and every plugin loaded, the user's cache
  // written); the same folder again (from the user's cache).
  ::setenv("XDG_CACHE_HOME", (tmp / "cache").c_str(), 1);
  fs::create_directories(tmp / "user-plugins");
  const auto user_plugin = tmp / "user-plugins" / "noop.so";
  std::vector<double> indexed, cold, cached;
  for (int i = 0; i < std::max(3, reps); ++i) {
    std::error_code ec;
    fs::remove_all(tmp / "cache", ec);
    indexed.push_back(run_child({runner, "plugins"}).first);
    // A fresh copy each time: a file the user's cache has not seen.
    fs::copy_file(vm["plugin-dir"].as<std::string>() + "/noop.so", user_plugin, fs::copy_options::overwrite_existing);
    cold.push_back(run_child({runner, "plugins", "--plugin-dir", (tmp / "user-plugins").string()}).first);
    cached.push_back(run_child({runner, "plugins", "--plugin-dir", (tmp / "user-plugins").string()}).first);
  }
  std::printf("torchfit plugins (start, discover and describe every plugin, exit), medians: %.3f s after the build "
              "(the folder's index); with a folder nobody indexed: %.3f s the first time, %.3f s from the user's cache\n",
              median(indexed), median(cold), median(cached));
  if (ring_epochs > 0) {
    const auto epochs_arg = std::to_string(ring_epochs);
    auto [hand_s, hand_rss] = run_child({vm["hand-program"].as<std::string>(), epochs_arg});
    fs::current_path(tmp);
    // On the CPU, like the hand-written program, whatever --device the loops above ran on.
    auto [fit_s, fit_rss] = run_child({runner, "train", "--model", "dnn_binary", "--epochs", epochs_arg, "--patience",
                                       "100000", "--monitor", "val_acc", "--quiet", "--device", "cpu"});
    std::printf("peak RSS, ring for %s epochs: torchfit train %.1f MiB, hand-written program %.1f MiB, ratio %.3f\n",
                epochs_arg.c_str(), fit_rss, hand_rss, fit_rss / hand_rss);
  }
  const auto folder = vm["image-folder"].as<std::string>();
  if (!smoke && vm["image-epochs"].as<int64_t>() > 0 && fs::exists(fs::path(folder) / "t10k-images-idx3-ubyte.gz")) {
    // The CNN, one epoch over Fashion-MNIST's test split (9,000 images train, 1,000 validate),
    // AdamW 2e-3, batch 256, both ways.
    const auto epochs_arg = std::to_string(vm["image-epochs"].as<int64_t>());
    fs::current_path(tmp);
    // Both at this process's thread count (the runner's auto would take every core).
    const auto threads = std::to_string(torch::get_num_threads());
    ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
    auto [hand_s, hand_rss] = run_child({vm["hand-program"].as<std::string>(), "cnn", folder, epochs_arg});
    auto [fit_s, fit_rss] = run_child({runner, "train", "--model", "cnn", "--dataset", "fashion_mnist",
                                       "--fashion_mnist.folder", folder, "--fashion_mnist.split", "test",
                                       "--val-split", "0.1", "--epochs", epochs_arg, "--quiet", "--device", "cpu",
                                       "--threads", threads});
    ::unsetenv("OMP_NUM_THREADS");
    std::printf("peak RSS, CNN on Fashion-MNIST's test split for %s epoch(s), %s thread(s): torchfit train %.1f MiB "
                "(%.1f s), hand-written program %.1f MiB (%.1f s), ratio %.3f\n",
                epochs_arg.c_str(), threads.c_str(), fit_rss, fit_s, hand_rss, hand_s, fit_rss / hand_rss);
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}
