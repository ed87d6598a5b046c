// Device choice, seeding and the host allocator.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "torchfit/export.hpp"

namespace torchfit {

/// CUDA when LibTorch has it and a GPU is visible, else CPU.
TORCHFIT_EXPORT torch::Device default_device();
/// "auto", "cpu", "cuda" or "cuda:1". Throws ConfigError for anything else, or for CUDA
/// when this LibTorch has none.
TORCHFIT_EXPORT torch::Device parse_device(const std::string& name);
/// Seeds LibTorch's CPU and CUDA generators and the C library's rand(), so a CPU run
/// repeats bit for bit.
TORCHFIT_EXPORT void seed_everything(uint64_t seed);

/// What tune_host_allocator() did.
struct HostAllocatorTuning {
  bool applied = false;
  std::string reason;  ///< what was set, or why nothing was
};
/// Stops glibc's malloc from handing heap pages back to the system and faulting them in again
/// between batches: fixes its thresholds at the values its own adaptive rule reaches in a
/// program that frees large buffers (requests from 32 MiB up are mapped, and the heap's top is
/// trimmed once 64 MiB of it is free). Left adaptive, the thresholds depend on the process's
/// history, and the same training loop can take 2x its time in page faults (docs/performance.md).
/// Process-wide, so it is the program's choice: the torchfit runner calls it first thing; a
/// program of your own can too. Does nothing on another C library, or where MALLOC_MMAP_THRESHOLD_,
/// MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or GLIBC_TUNABLES's glibc.malloc settings already
/// choose, or TORCHFIT_HOST_ALLOCATOR=system asks to leave glibc's defaults.
TORCHFIT_EXPORT HostAllocatorTuning tune_host_allocator();

}  // namespace torchfit
