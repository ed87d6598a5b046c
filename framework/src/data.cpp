// DataLoader and BatchStream: batches of any dataset, gathered in order by worker threads.
#include "torchfit/data.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"

namespace torchfit {

int64_t suggested_workers(const Dataset& dataset, const LoaderOptions& options) {
  if (dynamic_cast<const TensorDataset*>(&dataset) && options.transforms().empty()) return 0;
  const int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  return std::clamp<int64_t>(cores / 2, 1, 4);
}

DataLoader::DataLoader(TensorDataset dataset, LoaderOptions options)
    : DataLoader(std::make_shared<const TensorDataset>(std::move(dataset)), std::move(options)) {}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  if (!dataset_ || dataset_->size() == 0) {
    throw DataError("cannot make a loader over an empty dataset");
  }
  if (options_.workers() < 0) {
    throw DataError("workers must be 0 (load in the training thread) or more, got " +
                    std::to_string(options_.workers()));
  }
  if (options_.prefetch() < 1) {
    throw DataError("prefetch must be at least 1 batch per worker, got " + std::to_string(options_.prefetch()));
  }
  if (options_.batch_size() < 1) {
    throw DataError("batch size must be at least 1, got " + std::to_string(options_.batch_size()));
  }
  if (options_.drop_last() && options_.batch_size() > dataset_->size()) {
    throw DataError("batch size " + std::to_string(options_.batch_size()) + " with drop_last leaves no batch of the " +
                    std::to_string(dataset_->size()) + " samples; lower the batch size");
  }
  seed_ = options_.seed() ? *options_.seed()
                          : static_cast<uint64_t>(torch::randint(0, int64_t{1} << 62, {1}, torch::kLong).item<int64_t>());
}

int64_t DataLoader::epoch_size() const {
  const auto n = dataset_->size();
  if (shard_count_ == 1) return n;
  return shard_pad_ ? (n + shard_count_ - 1) / shard_count_ : (n - shard_rank_ + shard_count_ - 1) / shard_count_;
}

int64_t DataLoader::num_samples() const {
  return options_.drop_last() ? num_batches() * options_.batch_size() : epoch_size();
}

int64_t DataLoader::num_batches() const {
  const auto n = epoch_size();
  const auto b = options_.batch_size();
  return options_.drop_last() ? n / b : (n + b - 1) / b;
}

DataLoader DataLoader::shard(int64_t rank, int64_t count, bool pad) const {
  if (count < 1 || rank < 0 || rank >= count) {
    throw DataError("shard " + std::to_string(rank) + " of " + std::to_string(count) + " does not exist");
  }
  DataLoader copy = *this;
  copy.shard_rank_ = rank;
  copy.shard_count_ = count;
  copy.shard_pad_ = pad;
  return copy;
}

DataLoader DataLoader::to(torch::Device device) const {
  DataLoader copy = *this;
  copy.copy_to_.reset();
  if (dataset_->device() == device && !(options_.pin_memory() && device.is_cuda())) return copy;
  if (!(options_.pin_memory() && device.is_cuda())) {
    if (auto moved = dataset_->on_device(device)) {
      copy.dataset_ = std::move(moved);
      return copy;
    }
  }
  copy.copy_to_ = device;
  return copy;
}

torch::Device DataLoader::batch_device() const { return copy_to_ ? *copy_to_ : dataset_->device(); }

DataLoader::Epoch DataLoader::epoch(uint64_t epoch) const {
  const auto device = dataset_->device();
  const auto n = dataset_->size();
  if (shard_count_ > 1) {
    // Like torch.utils.data.DistributedSampler: the one global order of this epoch (the same
    // on every process), padded with its first samples to a multiple of the process count
    // when `pad`, then every count-th sample from position `rank`.
    auto order = options_.shuffle() ? seeded_permutation(n, seed_, epoch) : torch::arange(n, torch::kLong);
    int64_t total = n;
    if (shard_pad_) {
      total = (n + shard_count_ - 1) / shard_count_ * shard_count_;
      order = order.index_select(0, torch::arange(total, torch::kLong).remainder(n));
    }
    return Epoch(*this, order.slice(0, shard_rank_, total, shard_count_).contiguous().to(device), epoch);
  }
  // In order: one arange per epoch, narrowed per batch (an index_select copies the rows, so no
  // batch is a view of the dataset).
  auto order = options_.shuffle() ? seeded_permutation(n, seed_, epoch).to(device)
                                  : torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(device));
  return Epoch(*this, std::move(order), epoch);
}

int64_t DataLoader::Epoch::size() const { return loader_->num_batches(); }

Batch DataLoader::Epoch::gather(int64_t index, const std::atomic<bool>* cancel) const {
  const DataLoader& loader = *loader_;
  const Dataset& ds = *loader.dataset_;
  const auto& options = loader.options_;
  const int64_t b = options.batch_size();
  const int64_t start = index * b;
  const int64_t len = std::min(b, loader.epoch_size() - start);
  const auto indices = order_.narrow(0, start, len);
  Batch batch;
  if (options.transforms().empty()) {
    try {
      batch = ds.get_batch(indices);
    } catch (const DataError&) {
      throw;
    } catch (const c10::Error& e) {
      throw DataError(ds.name() + " failed to gather batch " + std::to_string(index) + ": " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw DataError(ds.name() + " failed to gather batch " + std::to_string(index) + ": " + e.what());
    }
    if (batch.size() != len) {
      throw DataError(ds.name() + " returned a batch of " + std::to_string(batch.size()) + " samples for " +
                      std::to_string(len) + " indices (batch " + std::to_string(index) + ": " + batch.describe() + ")");
    }
  } else {
    const auto cpu = indices.to(torch::kCPU).contiguous();
    const int64_t* ids = cpu.data_ptr<int64_t>();
    std::vector<int64_t> id_list(ids, ids + len);
    std::vector<Sample> samples;
    samples.reserve(static_cast<size_t>(len));
    for (const int64_t id : id_list) {
      if (cancel && cancel->load(std::memory_order_relaxed)) return Batch();
      Sample s = ds.sample(id);
      Rng rng(Rng::seed_for(loader.seed_, epoch_, static_cast<uint64_t>(id)));
      for (size_t t = 0; t < options.transforms().size(); ++t) {
        try {
          options.transforms()[t](s, rng);
        } catch (const c10::Error& e) {
          throw DataError("transform " + std::to_string(t + 1) + " failed on sample " + std::to_string(id) + " of " +
                          ds.name() + ": " + e.what_without_backtrace());
        } catch (const std::exception& e) {
          throw DataError("transform " + std::to_string(t + 1) + " failed on sample " + std::to_string(id) + " of " +
                          ds.name() + ": " + e.what());
        }
      }
      samples.push_back(std::move(s));
    }
    batch = collate(samples, id_list, ds.name());
  }
  if (!options.batch_transforms().empty()) {
    // Batch indices are seeded apart from sample indices (the high bit), so a batch transform
    // and a sample transform with the same index never draw the same numbers.
    Rng rng(Rng::seed_for(loader.seed_, epoch_, static_cast<uint64_t>(index) | (uint64_t{1} << 63)));
    for (const auto& t : options.batch_transforms()) t(batch, rng);
  }
  if (loader.copy_to_) {
    const bool async = options.pin_memory() && loader.copy_to_->is_cuda();
    batch = (async ? batch.pinned() : batch).to(*loader.copy_to_, async);
  }
  return batch;
}

Batch DataLoader::Epoch::batch(int64_t index) const {
  if (index < 0 || index >= size()) {
    throw DataError("batch " + std::to_string(index) + " is out of range: the epoch has " + std::to_string(size()));
  }
  return gather(index, nullptr);
}

// ---- BatchStream ---------------------------------------------------------------------------

/// The batches of one epoch from `first` on, in order. Without workers each is gathered when
/// asked for; with them, worker threads claim the next batch indices and gather up to
/// workers x prefetch batches ahead, and next() hands them out in index order. A worker's error
/// is raised by next() for the batch it failed on, after every worker has stopped.
class BatchStream {
 public:
  BatchStream(DataLoader::Epoch epoch, int64_t first)
      : epoch_(std::move(epoch)), next_(first), claimed_(first), end_(epoch_.size()) {
    const auto& options = epoch_.loader_->options();
    const int64_t workers = std::min<int64_t>(options.workers(), end_ - first);
    capacity_ = std::max<int64_t>(1, options.workers() * options.prefetch());
    for (int64_t w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  ~BatchStream() { stop(); }
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  Batch next() {
    if (threads_.empty()) {
      if (next_ >= end_) throw DataError("read past the end of the epoch");
      return epoch_.gather(next_++, nullptr);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (next_ >= end_ && ready_.count(next_) == 0) throw DataError("read past the end of the epoch");
    ready_cv_.wait(lock, [&] { return ready_.count(next_) > 0; });
    auto node = ready_.extract(next_);
    ++next_;
    space_cv_.notify_all();
    if (node.mapped().error) {
      lock.unlock();
      stop();
      std::rethrow_exception(node.mapped().error);
    }
    return std::move(node.mapped().batch);
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancel_.store(true);
    }
    space_cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  void work() {
    // Grad mode is per thread: no autograd bookkeeping for the data (not InferenceMode, whose
    // tensors could not be saved for the net's backward).
    torch::NoGradGuard no_grad;
    for (;;) {
      int64_t index;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_cv_.wait(lock, [&] { return cancel_.load() || claimed_ >= end_ || claimed_ < next_ + capacity_; });
        if (cancel_.load() || claimed_ >= end_) return;
        index = claimed_++;
      }
      Slot slot;
      try {
        slot.batch = epoch_.gather(index, &cancel_);
      } catch (...) {
        slot.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      const bool failed = static_cast<bool>(slot.error);
      ready_.emplace(index, std::move(slot));
      ready_cv_.notify_all();
      if (failed) {
        // Nothing after a failed batch is needed: the consumer raises its error when it gets there.
        end_ = std::min(end_, index + 1);
        space_cv_.notify_all();
      }
    }
  }

  DataLoader::Epoch epoch_;
  int64_t next_;     // the next batch next() hands out
  int64_t claimed_;  // the next batch a worker gathers
  int64_t end_;
  int64_t capacity_ = 1;
  std::atomic<bool> cancel_{false};
  std::mutex mutex_;
  std::condition_variable ready_cv_, space_cv_;
  std::map<int64_t, Slot> ready_;
  std::vector<std::thread> threads_;
};

DataLoader::Iterator::Iterator(std::shared_ptr<BatchStream> stream, int64_t index)
    : stream_(std::move(stream)), index_(index) {}

const Batch& DataLoader::Iterator::operator*() const {
  if (!loaded_) {
    current_ = stream_->next();
    loaded_ = true;
  }
  return current_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  if (!loaded_) stream_->next();  // skipped without being read: still consumed, in order
  current_ = Batch();
  loaded_ = false;
  ++index_;
  return *this;
}

DataLoader::Iterator DataLoader::Epoch::begin() const { return begin_at(0); }
DataLoader::Iterator DataLoader::Epoch::end() const { return Iterator(nullptr, size()); }

DataLoader::Iterator DataLoader::Epoch::begin_at(int64_t batch) const {
  const int64_t first = std::clamp<int64_t>(batch, 0, size());
  return Iterator(first < size() ? std::make_shared<BatchStream>(*this, first) : nullptr, first);
}

}  // namespace torchfit
