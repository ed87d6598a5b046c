// Tensor-native data: a dataset of (features, targets), a seeded split and a batch loader.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// Features and targets as two tensors whose first dimension is the sample index.
/// Targets may be undefined (data to predict on).
class TORCHFIT_EXPORT TensorDataset {
 public:
  TensorDataset() = default;
  /// Throws DataError when the two first dimensions differ or the features are not at least 1-D.
  explicit TensorDataset(torch::Tensor features, torch::Tensor targets = {});

  int64_t size() const { return features_.defined() ? features_.size(0) : 0; }
  bool empty() const { return size() == 0; }
  const torch::Tensor& features() const { return features_; }
  const torch::Tensor& targets() const { return targets_; }
  bool has_targets() const { return targets_.defined(); }
  /// The samples at `indices` (an int64 tensor), gathered with index_select.
  TensorDataset subset(const torch::Tensor& indices) const;
  /// A copy on `device` (a no-op when already there).
  TensorDataset to(torch::Device device, bool non_blocking = false) const;

 private:
  torch::Tensor features_;
  torch::Tensor targets_;
};

/// Splits `dataset` at random into parts of the given fractions (which must add up to 1) or
/// counts (which must add up to the size), like torch.utils.data.random_split. The same seed
/// always gives the same parts; the parts are disjoint and together hold every sample.
TORCHFIT_EXPORT std::vector<TensorDataset> random_split(const TensorDataset& dataset,
                                                        const std::vector<double>& fractions, uint64_t seed);
TORCHFIT_EXPORT std::vector<TensorDataset> random_split(const TensorDataset& dataset,
                                                        const std::vector<int64_t>& counts, uint64_t seed);

/// A permutation of 0..n-1 that depends only on (seed, epoch): the loader's shuffle, and
/// the reason a resumed run sees the same batches as an uninterrupted one.
TORCHFIT_EXPORT torch::Tensor seeded_permutation(int64_t n, uint64_t seed, uint64_t epoch);

struct TORCHFIT_EXPORT LoaderOptions {
  LoaderOptions(int64_t batch_size = 32) : batch_size_(batch_size) {}  // NOLINT
  TORCH_ARG(int64_t, batch_size);
  TORCH_ARG(bool, shuffle) = false;
  TORCH_ARG(bool, drop_last) = false;
  /// Shuffle seed; unset, it is drawn from LibTorch's global generator (so seed_everything fixes it).
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;
  /// Training on a GPU: keep the data in pinned host memory and copy each batch to the device
  /// asynchronously (non_blocking), like torch.utils.data.DataLoader(pin_memory=True) with
  /// .to(device, non_blocking=True). Off, the whole dataset is copied to the device once, which
  /// is faster when it fits in the device's memory. No effect on a CPU.
  TORCH_ARG(bool, pin_memory) = false;
};

/// One batch: views or gathered copies of the dataset's rows.
struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;  // undefined when the dataset has none
  int64_t size() const { return inputs.size(0); }
};

/// Cuts a TensorDataset into batches. Without shuffle a batch is a zero-copy slice; with
/// shuffle it is one index_select per tensor. Every sample appears exactly once per epoch
/// (except the last partial batch with drop_last).
class TORCHFIT_EXPORT DataLoader {
 public:
  DataLoader() = default;
  /// Throws DataError for an empty dataset or a batch size below 1.
  DataLoader(TensorDataset dataset, LoaderOptions options);

  class Iterator;
  /// The batches of epoch `epoch` (the shuffle depends on the seed and the epoch only). It
  /// holds its own copy of the loader (tensors are shared, not copied), so
  /// `for (auto& b : loader.shard(r, n, pad).epoch(e))` is safe.
  class Epoch {
   public:
    Iterator begin() const;
    Iterator end() const;
    /// From batch `batch` on (a resumed epoch skips the batches already trained).
    Iterator begin_at(int64_t batch) const;
    /// Batch `index` (0-based) of this epoch.
    Batch batch(int64_t index) const;

   private:
    friend class DataLoader;
    Epoch(const DataLoader& loader, torch::Tensor order)
        : loader_(std::make_shared<const DataLoader>(loader)), order_(std::move(order)) {}
    std::shared_ptr<const DataLoader> loader_;
    torch::Tensor order_;  // undefined: in order
  };
  class Iterator {
   public:
    Batch operator*() const;
    int64_t index() const { return index_; }
    Iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return index_ != other.index_; }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    friend class Epoch;
    Iterator(const Epoch* epoch, int64_t index) : epoch_(epoch), index_(index) {}
    const Epoch* epoch_;
    int64_t index_;
  };

  /// `for (const auto& batch : loader.epoch(e))`: the batches of epoch e.
  Epoch epoch(uint64_t epoch) const;

  const TensorDataset& dataset() const { return dataset_; }
  const LoaderOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  int64_t num_batches() const;
  int64_t num_samples() const;
  /// The same loader for training on `device`: over a copy of the data there, or with
  /// pin_memory over the data in pinned host memory, each batch copied to `device` as it is read.
  DataLoader to(torch::Device device) const;
  /// Where batches are: the data's device, or the device they are copied to (pin_memory).
  torch::Device batch_device() const;
  /// Process `rank`'s part of every epoch, for data-parallel training over `count` processes
  /// (like torch.utils.data.DistributedSampler): every process computes the same global order
  /// of the epoch and takes every count-th sample from position `rank`. With `pad` (training)
  /// the order is first padded with its own first samples to a multiple of `count`, so every
  /// process has the same number of batches; without (validation) the parts are disjoint and
  /// together hold each sample exactly once.
  DataLoader shard(int64_t rank, int64_t count, bool pad) const;
  int64_t shard_rank() const { return shard_rank_; }
  int64_t shard_count() const { return shard_count_; }

 private:
  int64_t epoch_size() const;  // samples per epoch on this process, before drop_last

  TensorDataset dataset_;
  LoaderOptions options_;
  uint64_t seed_ = 0;
  int64_t shard_rank_ = 0;
  int64_t shard_count_ = 1;
  bool shard_pad_ = false;
  std::optional<torch::Device> copy_to_;  // pin_memory: batches are copied here
};

}  // namespace torchfit
