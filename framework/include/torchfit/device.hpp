// Device choice and seeding.
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

}  // namespace torchfit
