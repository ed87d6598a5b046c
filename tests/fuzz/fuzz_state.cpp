// libFuzzer harness: the state-file loader (read_state_info, then a full resume of a tiny fit).
// With TORCHFIT_FUZZ_WRITE_SEEDS=DIR set, writes valid state files into DIR first (the corpus).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include <torchfit/torchfit.hpp>

namespace {

namespace fs = std::filesystem;
namespace tf = torchfit;

struct Setup {
  tf::DataLoader train, val;
  fs::path file;
  Setup() {
    torch::manual_seed(0);
    auto x = torch::randn({12, 2});
    auto y = x.sum(1, true);
    train = tf::DataLoader(tf::TensorDataset(x, y), tf::LoaderOptions(4).shuffle(true).seed(1));
    val = tf::DataLoader(tf::TensorDataset(x, y), tf::LoaderOptions(6));
    file = fs::temp_directory_path() / ("torchfit-fuzz-" + std::to_string(::getpid()) + ".state");
  }
  std::shared_ptr<tf::Trainer> trainer() const {
    torch::nn::Linear net(2, 1);
    return std::make_shared<tf::Trainer>(net, torch::nn::MSELoss(), tf::Metrics{},
                                         std::make_shared<torch::optim::Adam>(net->parameters()));
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  if (const char* dir = std::getenv("TORCHFIT_FUZZ_WRITE_SEEDS")) {
    auto& s = setup();
    s.trainer()->fit(s.train, s.val, tf::FitOptions().epochs(2).state_path(fs::path(dir) / "epoch_end.state"));
    s.trainer()->fit(s.train, s.val,
                     tf::FitOptions().epochs(1).state_every_steps(1).state_path(fs::path(dir) / "mid_epoch.state"));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& s = setup();
  {
    std::ofstream out(s.file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto info = tf::read_state_info(s.file);
    if (info.format < 1 || info.format > tf::kStateFormat) __builtin_trap();
    s.trainer()->fit(s.train, s.val, tf::FitOptions().epochs(3).resume_from(s.file));
  } catch (const tf::Error&) {
    // CheckpointError (damaged, wrong model, ...) or a clear data/config error: expected.
  }
  return 0;
}
