// Data-parallel throughput: the compute-bound MLP (784-512-256-10) trained by 1, 2, ...
// processes with the same global batch, and the time each step spends in the all-reduce.
//
//   torchfit_bench_distributed [--nproc-list 1,2] [--samples 60000] [--epochs 2] [--batch 256]
//
// The parent starts each configuration with launch_workers (the code behind `torchfit train
// --nproc`); rank 0 of each writes one result line, which the parent prints as a table.
#include <boost/program_options.hpp>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include <torchfit/torchfit.hpp>

namespace po = boost::program_options;
namespace tf = torchfit;
using Clock = std::chrono::steady_clock;

namespace {

// Time from the end of backward to the optimizer step: the gradient all-reduce (and, with one
// process, nothing).
class AllReduceTimer final : public tf::Callback {
 public:
  void on_after_backward(tf::Context&) override { start_ = Clock::now(); }
  void on_before_optimizer_step(tf::Context&) override {
    total_ += std::chrono::duration<double>(Clock::now() - start_).count();
    ++steps_;
  }
  double per_step_ms() const { return steps_ ? 1e3 * total_ / static_cast<double>(steps_) : 0.0; }

 private:
  Clock::time_point start_;
  double total_ = 0;
  int64_t steps_ = 0;
};

int worker(const po::variables_map& vm) {
  spdlog::set_level(spdlog::level::warn);
  const auto samples = vm["samples"].as<int64_t>();
  const auto epochs = vm["epochs"].as<int64_t>();
  const auto global_batch = vm["batch"].as<int64_t>();
  std::shared_ptr<tf::Communicator> comm;
  int world = 1;
  if (auto dist = tf::distributed_from_env(); dist && dist->world_size > 1) {
    comm = tf::connect(*dist);
    world = dist->world_size;
  }
  if (global_batch % world != 0) throw tf::ConfigError("--batch must divide by the process count");
  // The same synthetic data on every process (seeded), split into shards by the trainer.
  auto gen = tf::compat::make_generator(7);
  auto x = torch::randn({samples, 784}, gen);
  auto y = x.matmul(torch::randn({784, 10}, gen)).argmax(1);
  tf::seed_everything(1);
  torch::nn::Sequential net(torch::nn::Linear(784, 512), torch::nn::ReLU(), torch::nn::Linear(512, 256),
                            torch::nn::ReLU(), torch::nn::Linear(256, 10));
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  tf::Trainer trainer(net, torch::nn::CrossEntropyLoss(), {}, opt);
  trainer.to(torch::kCPU);
  auto timer = std::make_shared<AllReduceTimer>();
  tf::DataLoader loader(tf::TensorDataset(x, y), tf::LoaderOptions(global_batch / world).shuffle(true).seed(3));
  const auto start = Clock::now();
  auto history = trainer.fit(loader, tf::FitOptions().epochs(epochs).callbacks({timer}).communicator(comm));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!comm || comm->rank() == 0) {
    std::ofstream out(vm["result"].as<std::string>());
    out << world << " " << static_cast<double>(samples * epochs) / seconds << " " << timer->per_step_ms() << " "
        << history.back().at("train_loss") << " " << torch::get_num_threads() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("torchfit_bench_distributed: data-parallel throughput of the MLP");
  desc.add_options()("help,h", "this help")                                                           //
      ("nproc-list", po::value<std::string>()->default_value("1,2"), "process counts to measure")      //
      ("samples", po::value<int64_t>()->default_value(60000), "training samples")                      //
      ("epochs", po::value<int64_t>()->default_value(2), "epochs per run")                              //
      ("batch", po::value<int64_t>()->default_value(256), "global batch (divided among the processes)")  //
      ("smoke", "tiny sizes: checks that the benchmark runs")                                          //
      ("result", po::value<std::string>(), "internal: where a worker writes its result");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  try {
    if (vm.count("result")) return worker(vm);
    if (!tf::distributed_available()) {
      std::cout << "this build has no c10d/Gloo: nothing to measure\n";
      return 0;
    }
    const bool smoke = vm.count("smoke");
    const std::string tmp = (std::filesystem::temp_directory_path() / ("tf-dist-" + std::to_string(::getpid()))).string();
    std::cout << "MLP 784-512-256-10, SGD, global batch " << vm["batch"].as<int64_t>() << ", "
              << (smoke ? 512 : vm["samples"].as<int64_t>()) << " samples x " << (smoke ? 1 : vm["epochs"].as<int64_t>())
              << " epochs, " << std::thread::hardware_concurrency() << " cores\n\n"
              << "processes  threads each  samples/s  speed-up  all-reduce ms/step  final train_loss\n";
    double base = 0;
    std::stringstream list(vm["nproc-list"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) {
      const int n = std::stoi(item);
      std::vector<std::string> args = {argv[0], "--result", tmp + "." + item};
      args.push_back("--samples=" + std::to_string(smoke ? 512 : vm["samples"].as<int64_t>()));
      args.push_back("--epochs=" + std::to_string(smoke ? 1 : vm["epochs"].as<int64_t>()));
      args.push_back("--batch=" + std::to_string(vm["batch"].as<int64_t>()));
      std::vector<char*> raw;
      for (auto& a : args) raw.push_back(a.data());
      const int rc = tf::launch_workers(static_cast<int>(raw.size()), raw.data(), n, std::chrono::seconds(60));
      if (rc != 0) {
        std::cerr << "the run with " << n << " processes failed (exit " << rc << ")\n";
        return 1;
      }
      std::ifstream in(tmp + "." + item);
      int world = 0, threads = 0;
      double rate = 0, ms = 0, loss = 0;
      in >> world >> rate >> ms >> loss >> threads;
      std::filesystem::remove(tmp + "." + item);
      if (base == 0) base = rate;
      std::cout << std::setw(9) << world << std::setw(14) << threads << std::setw(11) << std::fixed
                << std::setprecision(0) << rate << std::setw(10) << std::setprecision(2) << rate / base
                << std::setw(20) << std::setprecision(3) << ms << std::setw(18) << std::setprecision(5) << loss << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "torchfit_bench_distributed: " << e.what() << "\n";
    return 1;
  }
}
