// The one place where LibTorch 1.13 and 2.x differ for torchfit.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <string>

/// True when compiled against LibTorch major.minor or newer: the one test for version
/// differences (used here and in precision.cpp).
#define TORCHFIT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace torchfit::compat {

/// "1.13.1" or "2.3.0": the LibTorch this code was compiled against.
inline std::string torch_version() {
#ifdef TORCH_VERSION
  return TORCH_VERSION;
#else
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#endif
}

/// Sets every gradient to "none" (2.x default) or zero (1.13 default) the same way in both.
inline void zero_grad(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      if (p.mutable_grad().defined()) {
        p.mutable_grad().reset();
      }
    }
  }
}

/// A CPU generator of its own, so seeded data does not disturb (or depend on) the global one.
inline torch::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

}  // namespace torchfit::compat
