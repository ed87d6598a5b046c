// Device choice and seeding.
#include "torchfit/device.hpp"

#include <cstdlib>

#include "torchfit/errors.hpp"

namespace torchfit {

torch::Device default_device() { return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::kCPU; }

torch::Device parse_device(const std::string& name) {
  if (name == "auto") {
    return default_device();
  }
  if (name == "cpu") {
    return torch::kCPU;
  }
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw ConfigError("device '" + name + "' was asked for, but this LibTorch " +
                        std::string(torch::cuda::device_count() == 0 ? "sees no CUDA device" : "has no CUDA") +
                        "; use --device cpu or --device auto");
    }
    try {
      torch::Device device(name);
      if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count())) {
        throw ConfigError("device '" + name + "' does not exist: there are " +
                          std::to_string(torch::cuda::device_count()) + " CUDA devices");
      }
      return device;
    } catch (const c10::Error&) {
      throw ConfigError("device '" + name + "' is not a device name; use auto, cpu, cuda or cuda:N");
    }
  }
  throw ConfigError("device '" + name + "' is not a device name; use auto, cpu, cuda or cuda:N");
}

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) {
    torch::cuda::manual_seed_all(seed);
  }
  std::srand(static_cast<unsigned>(seed));
}

}  // namespace torchfit
