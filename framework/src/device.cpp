// Device choice, seeding and the host allocator.
#include "torchfit/device.hpp"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

HostAllocatorTuning tune_host_allocator() {
#if defined(__GLIBC__)
  const char* choice = std::getenv("TORCHFIT_HOST_ALLOCATOR");
  if (choice != nullptr && std::strcmp(choice, "system") == 0) {
    return {false, "glibc's adaptive malloc thresholds (TORCHFIT_HOST_ALLOCATOR=system)"};
  }
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (std::getenv(name) != nullptr) {
      return {false, std::string("malloc thresholds from the environment (") + name + ")"};
    }
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) {
    return {false, "malloc thresholds from the environment (GLIBC_TUNABLES)"};
  }
  constexpr int kMmapThreshold = 32 << 20;  // glibc's ceiling for its adaptive threshold on 64-bit
  constexpr int kTrimThreshold = 2 * kMmapThreshold;  // what its rule pairs with it
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1) {
    return {true, "malloc maps requests from 32 MiB and trims the heap above 64 MiB free"};
  }
  return {false, "mallopt refused the thresholds (another malloc, such as a sanitizer's?): malloc left as it is"};
#else
  return {false, "not glibc: its malloc is left as it is"};
#endif
}

}  // namespace torchfit
