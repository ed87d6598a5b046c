// DataLoader: batches of any dataset, shuffled by (seed, epoch), sharded, transformed and gathered ahead by workers.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/dataset.hpp"
#include "torchfit/export.hpp"
#include "torchfit/transforms.hpp"

namespace torchfit {

struct TORCHFIT_EXPORT LoaderOptions {
  LoaderOptions(int64_t batch_size = 32) : batch_size_(batch_size) {}  // NOLINT
  TORCH_ARG(int64_t, batch_size);
  TORCH_ARG(bool, shuffle) = false;
  TORCH_ARG(bool, drop_last) = false;
  /// Shuffle seed; unset, it is drawn from LibTorch's global generator (so seed_everything fixes it).
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;
  /// Training on a GPU: gather each batch in pinned host memory and copy it to the device
  /// asynchronously (non_blocking), like torch.utils.data.DataLoader(pin_memory=True) with
  /// .to(device, non_blocking=True). Off, an in-memory dataset (TensorDataset) is copied to the
  /// device once, which is faster when it fits in the device's memory. No effect on a CPU.
  TORCH_ARG(bool, pin_memory) = false;
  /// Threads that gather (and transform) the next batches while the trainer computes, like
  /// torch.utils.data.DataLoader(num_workers=N) but threads. 0: in the training thread. The
  /// batches are the same, in the same order, for any number.
  TORCH_ARG(int64_t, workers) = 0;
  /// Batches each worker may have ready ahead (PyTorch's prefetch_factor).
  TORCH_ARG(int64_t, prefetch) = 2;
  /// Per-sample transforms, applied in order to each sample (then the samples are stacked).
  /// Their randomness depends on (the loader's seed, the epoch, the sample's index) only.
  TORCH_ARG(std::vector<Transform>, transforms) = {};
  /// Per-batch transforms, applied in order to each stacked batch, seeded by (seed, epoch, batch index).
  TORCH_ARG(std::vector<BatchTransform>, batch_transforms) = {};
};

class BatchStream;

/// A sensible `workers` for `dataset` under `options`: 0 for in-memory tensors without
/// per-sample transforms (one index_select per field: handing batches across threads would
/// cost more), else half the cores, from 1 to 4. The runner's `--workers auto`.
TORCHFIT_EXPORT int64_t suggested_workers(const Dataset& dataset, const LoaderOptions& options);

/// Cuts a dataset into batches: every sample exactly once per epoch (except the last partial
/// batch with drop_last), in order or shuffled by (seed, epoch). A batch is always a copy: no
/// callback or transform can write into the dataset through it. Without per-sample transforms
/// a batch is one Dataset::get_batch() call (TensorDataset: one index_select per field); with
/// them, get() per sample, transformed, then stacked.
///
/// Over a StreamDataset the batches are its samples in the order read, batch_size at a time;
/// the epoch ends with the stream, so num_batches() is -1 unless the stream knows its size.
class TORCHFIT_EXPORT DataLoader {
 public:
  DataLoader() = default;
  /// Throws DataError for an empty dataset or a batch size below 1.
  DataLoader(TensorDataset dataset, LoaderOptions options);
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  /// Over a stream: throws DataError with shuffle (a stream is read in order).
  DataLoader(std::shared_ptr<const StreamDataset> stream, LoaderOptions options);

  class Iterator;
  /// The batches of epoch `epoch` (the shuffle depends on the seed and the epoch only). It
  /// holds its own copy of the loader (tensors are shared, not copied), so
  /// `for (auto& b : loader.shard(r, n, pad).epoch(e))` is safe.
  class TORCHFIT_EXPORT Epoch {
   public:
    /// Iterating starts the loader's workers (when it has any), which gather the next batches
    /// ahead; they stop when the iterator is destroyed (a `break` out of the loop too).
    Iterator begin() const;
    Iterator end() const;
    /// From batch `batch` on (a resumed epoch skips the batches already trained).
    Iterator begin_at(int64_t batch) const;
    /// Batch `index` (0-based) of this epoch, gathered in the calling thread (a stream is
    /// opened at the batch's first sample).
    Batch batch(int64_t index) const;
    /// Batches in this epoch; -1 for a stream of unknown length.
    int64_t size() const;

   private:
    friend class DataLoader;
    friend class BatchStream;
    Epoch(const DataLoader& loader, torch::Tensor order, uint64_t epoch)
        : loader_(std::make_shared<const DataLoader>(loader)), order_(std::move(order)), epoch_(epoch) {}
    // A batch of a map-style dataset: its samples gathered, transformed, stacked, moved.
    Batch gather(int64_t index, const std::atomic<bool>* cancel) const;
    // A batch of a stream: the next samples of `reader`, transformed, stacked, moved (empty at
    // the end of the epoch). `read` reads them; `assemble` does the rest, in any thread.
    std::vector<Sample> read(StreamDataset::Reader& reader, int64_t index) const;
    Batch assemble(std::vector<Sample> samples, int64_t index, const std::atomic<bool>* cancel) const;
    Batch finish(Batch batch, int64_t index) const;  // batch transforms, the copy to the device
    Sample transformed(Sample sample, int64_t id) const;
    std::unique_ptr<StreamDataset::Reader> open(int64_t start) const;
    std::shared_ptr<const DataLoader> loader_;
    torch::Tensor order_;  // the dataset indices of this epoch, in order
    uint64_t epoch_;
  };
  /// An input iterator: each batch is read once, in order.
  class TORCHFIT_EXPORT Iterator {
   public:
    const Batch& operator*() const;
    const Batch* operator->() const { return &**this; }
    int64_t index() const { return index_; }
    Iterator& operator++();
    /// Against end(): whether the epoch has no batch left (a stream of unknown length reads
    /// the batch to know).
    bool operator==(const Iterator& other) const;
    bool operator!=(const Iterator& other) const { return !(*this == other); }
    /// Whether this batch is the epoch's last (a stream of unknown length reads the next one ahead).
    bool last() const;

   private:
    friend class Epoch;
    Iterator(std::shared_ptr<BatchStream> stream, int64_t index, int64_t size);
    bool done() const;
    std::shared_ptr<BatchStream> stream_;  // null for end()
    int64_t index_;
    int64_t size_;  // batches in the epoch, -1 when unknown
    mutable Batch current_;
    mutable bool loaded_ = false;
    mutable bool at_end_ = false;
  };

  /// `for (const auto& batch : loader.epoch(e))`: the batches of epoch e.
  Epoch epoch(uint64_t epoch) const;

  /// Whether this loader has data (a default-constructed one has none: "no validation").
  explicit operator bool() const { return dataset_ || stream_; }
  /// The map-style dataset (throws DataError for a loader over a stream).
  const Dataset& dataset() const;
  const std::shared_ptr<const Dataset>& dataset_ptr() const { return dataset_; }
  /// The stream, or null for a map-style dataset.
  const std::shared_ptr<const StreamDataset>& stream_ptr() const { return stream_; }
  /// How messages name the data (the dataset's or the stream's name).
  std::string data_name() const;
  /// The first sample of the first epoch, untransformed (what the data holds: its fields and roles).
  Sample first_sample() const;
  const LoaderOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  /// Batches and samples per epoch on this process; -1 for a stream of unknown length.
  int64_t num_batches() const;
  int64_t num_samples() const;
  /// Samples in the whole dataset (all processes); -1 for a stream of unknown length.
  int64_t dataset_size() const;
  /// The same loader for training on `device`: over a copy of the data there when the dataset
  /// can move as a whole (Dataset::on_device) and pin_memory is off; otherwise each batch is
  /// copied to `device` as it is read (through pinned memory, asynchronously, with pin_memory).
  DataLoader to(torch::Device device) const;
  /// Where batches are: the data's device, or the device they are copied to.
  torch::Device batch_device() const;
  /// Process `rank`'s part of every epoch, for data-parallel training over `count` processes
  /// (like torch.utils.data.DistributedSampler): every process computes the same global order
  /// of the epoch and takes every count-th sample from position `rank`. With `pad` (training)
  /// the order is first padded with its own first samples to a multiple of `count`, so every
  /// process has the same number of batches; without (validation) the parts are disjoint and
  /// together hold each sample exactly once. Throws DataError for a stream.
  DataLoader shard(int64_t rank, int64_t count, bool pad) const;
  int64_t shard_rank() const { return shard_rank_; }
  int64_t shard_count() const { return shard_count_; }

 private:
  int64_t epoch_size() const;  // samples per epoch on this process, before drop_last

  void init();  // checks the options, draws the seed

  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const StreamDataset> stream_;  // instead of dataset_
  LoaderOptions options_;
  uint64_t seed_ = 0;
  int64_t shard_rank_ = 0;
  int64_t shard_count_ = 1;
  bool shard_pad_ = false;
  std::optional<torch::Device> copy_to_;  // batches are copied here as they are read
};

}  // namespace torchfit
