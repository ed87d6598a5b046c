// Transforms: per-sample and per-batch changes (normalize, flips, crops, noise) whose randomness depends on (seed, epoch, index) only.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// The random numbers of one transform call. The loader seeds it from (its seed, the epoch,
/// the sample's index in the dataset) — for a batch transform, the batch's index in the epoch —
/// and from nothing else: the same augmentation for any number of workers, in any thread
/// order, and again on a resume.
class TORCHFIT_EXPORT Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  /// The seed of sample (or batch) `index` of `epoch` under the loader seed `seed`.
  static uint64_t seed_for(uint64_t seed, uint64_t epoch, uint64_t index);

  /// 64 random bits (SplitMix64: the same on every platform and LibTorch version).
  uint64_t next();
  /// Uniform in [0, 1).
  double uniform();
  /// True with probability `p`.
  bool chance(double p) { return uniform() < p; }
  /// Uniform integer in [low, high].
  int64_t integer(int64_t low, int64_t high);
  /// A LibTorch CPU generator seeded from this Rng, for tensor draws
  /// (`torch::randn(sizes, rng.generator())`); made on first use.
  torch::Generator& generator();

 private:
  uint64_t state_;
  std::optional<torch::Generator> generator_;
};

/// Changes one sample in place of its fields (replace a field's tensor; never write into it:
/// it may be a dataset's own storage). Runs in the loader's workers.
using Transform = std::function<void(Sample& sample, Rng& rng)>;
/// Changes one whole batch (mixup, batch-level noise), after the samples were stacked.
using BatchTransform = std::function<void(Batch& batch, Rng& rng)>;

/// Ready-made transforms for a field (by default the input "x"). Image fields are [C, H, W]
/// or [H, W] per sample.
namespace transforms {

/// (x - mean) / std, as float; one value for every channel, or one per channel (dimension 0).
TORCHFIT_EXPORT Transform normalize(std::vector<double> mean, std::vector<double> std, std::string field = "x");
/// Mirrors the last dimension (an image's width) with probability `p`.
TORCHFIT_EXPORT Transform random_horizontal_flip(double p = 0.5, std::string field = "x");
/// Pads the last two dimensions by `padding` zeros on every side, then crops back to the
/// original size at a random place (torchvision's RandomCrop(size, padding)): shifts of up to
/// `padding` pixels.
TORCHFIT_EXPORT Transform random_crop(int64_t padding, std::string field = "x");
/// The field as float32 times `scale`: bytes 0..255 to [0, 1] by default, like torchvision's ToTensor.
TORCHFIT_EXPORT Transform to_float(double scale = 1.0 / 255, std::string field = "x");
/// With probability `p`, zeroes one rectangle of 2% to 33% of the image's area, its aspect
/// ratio 0.3 to 3.3 (torchvision's RandomErasing with its defaults; after normalize, zero is
/// the mean).
TORCHFIT_EXPORT Transform random_erasing(double p = 0.5, std::string field = "x");
/// Adds Gaussian noise of standard deviation `std`.
TORCHFIT_EXPORT Transform gaussian_noise(double std, std::string field = "x");

}  // namespace transforms

}  // namespace torchfit
