// DataLoader and BatchStream: batches of any dataset, gathered in order by worker threads.
#include "torchfit/data.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include "data_errors.hpp"
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
  init();
}

DataLoader::DataLoader(std::shared_ptr<const StreamDataset> stream, LoaderOptions options)
    : stream_(std::move(stream)), options_(std::move(options)) {
  if (!stream_) throw DataError("cannot make a loader over no stream (a null pointer)");
  if (options_.shuffle()) {
    throw DataError(stream_->name() + " is a stream, read in order: the loader cannot shuffle it; shuffle inside the "
                    "stream (seeded by the epoch it is opened for) or use a map-style Dataset");
  }
  if (stream_->size() && *stream_->size() < 1) {
    throw DataError(stream_->name() + " says it has " + std::to_string(*stream_->size()) + " samples per epoch");
  }
  init();
}

const Dataset& DataLoader::dataset() const {
  if (!dataset_) {
    throw DataError(stream_ ? data_name() + " is a stream, not a map-style dataset" : "this loader has no data");
  }
  return *dataset_;
}

std::string DataLoader::data_name() const {
  return dataset_ ? dataset_->name() : stream_ ? stream_->name() : "no data";
}

Sample DataLoader::first_sample() const {
  if (dataset_) return dataset_->sample(0);
  if (!stream_) throw DataError("this loader has no data");
  auto first = detail::as_data_error([&] { return stream_->name() + " failed to read its first sample"; },
                                     [&] { return stream_->open(0, 0)->next(); });
  if (!first) throw DataError(stream_->name() + " has no samples (its first epoch is empty)");
  return std::move(*first);
}

int64_t DataLoader::dataset_size() const {
  if (dataset_) return dataset_->size();
  return stream_ && stream_->size() ? *stream_->size() : -1;
}

void DataLoader::init() {
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
  const int64_t size = dataset_size();
  if (options_.drop_last() && size >= 0 && options_.batch_size() > size) {
    throw DataError("batch size " + std::to_string(options_.batch_size()) + " with drop_last leaves no batch of the " +
                    std::to_string(size) + " samples; lower the batch size");
  }
  seed_ = options_.seed() ? *options_.seed()
                      : static_cast<uint64_t>(torch::randint(0, int64_t{1} << 62, {1}, torch::kLong).item<int64_t>());
}

int64_t DataLoader::epoch_size() const {
  const auto n = dataset_size();
  if (shard_count_ == 1 || n < 0) return n;
  return shard_pad_ ? (n + shard_count_ - 1) / shard_count_ : (n - shard_rank_ + shard_count_ - 1) / shard_count_;
}

int64_t DataLoader::num_samples() const {
  if (epoch_size() < 0) return -1;
  return options_.drop_last() ? num_batches() * options_.batch_size() : epoch_size();
}

int64_t DataLoader::num_batches() const {
  const auto n = epoch_size();
  const auto b = options_.batch_size();
  if (n < 0) return -1;
  return options_.drop_last() ? n / b : (n + b - 1) / b;
}

DataLoader DataLoader::shard(int64_t rank, int64_t count, bool pad) const {
  if (count < 1 || rank < 0 || rank >= count) {
    throw DataError("shard " + std::to_string(rank) + " of " + std::to_string(count) + " does not exist");
  }
  if (stream_) {
    throw DataError(stream_->name() + " is a stream: data-parallel training shards map-style datasets only (each "
                    "process must know its samples without reading the others')");
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
  if (stream_) {
    if (device != torch::Device(torch::kCPU)) copy.copy_to_ = device;  // streams give CPU samples
    return copy;
  }
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

torch::Device DataLoader::batch_device() const {
  return copy_to_ ? *copy_to_ : dataset_ ? dataset_->device() : torch::Device(torch::kCPU);
}

DataLoader::Epoch DataLoader::epoch(uint64_t epoch) const {
  if (stream_) return Epoch(*this, torch::Tensor(), epoch);
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
    batch = detail::as_data_error([&] { return ds.name() + " failed to gather batch " + std::to_string(index); },
                                  [&] { return ds.get_batch(indices); }, /*keep_data_errors=*/true);
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
      samples.push_back(transformed(ds.sample(id), id));
    }
    batch = collate(samples, id_list, ds.name());
  }
  return finish(std::move(batch), index);
}

Sample DataLoader::Epoch::transformed(Sample s, int64_t id) const {
  // A map-style sample is seeded by its index in the dataset, a stream's by its position in the epoch.
  const auto& transforms = loader_->options_.transforms();
  Rng rng(Rng::seed_for(loader_->seed_, epoch_, static_cast<uint64_t>(id)));
  for (size_t t = 0; t < transforms.size(); ++t) {
    detail::as_data_error(
        [&] {
          return "transform " + std::to_string(t + 1) + " failed on sample " + std::to_string(id) + " of " +
                 loader_->data_name();
        },
        [&] { transforms[t](s, rng); });
  }
  return s;
}

std::unique_ptr<StreamDataset::Reader> DataLoader::Epoch::open(int64_t start) const {
  const StreamDataset& stream = *loader_->stream_;
  auto where = [&] {
    return stream.name() + " failed to open epoch " + std::to_string(epoch_ + 1) + " at sample " + std::to_string(start);
  };
  auto reader = detail::as_data_error(where, [&] { return stream.open(epoch_, start); });
  if (!reader) throw DataError(where() + ": open() returned no reader");
  return reader;
}

std::vector<Sample> DataLoader::Epoch::read(StreamDataset::Reader& reader, int64_t index) const {
  const StreamDataset& stream = *loader_->stream_;
  const int64_t b = loader_->options_.batch_size();
  const int64_t known = loader_->epoch_size();  // -1 when unknown
  const int64_t first = index * b;
  const int64_t want = known < 0 ? b : std::clamp<int64_t>(known - first, 0, b);
  std::vector<Sample> samples;
  samples.reserve(static_cast<size_t>(want));
  while (static_cast<int64_t>(samples.size()) < want) {
    const int64_t position = first + static_cast<int64_t>(samples.size());
    auto s = detail::as_data_error(
        [&] {
          return stream.name() + " failed on sample " + std::to_string(position) + " of epoch " +
                 std::to_string(epoch_ + 1);
        },
        [&] { return reader.next(); });
    if (!s) {
      if (known >= 0) {
        throw DataError(stream.name() + " ended after " + std::to_string(position) + " samples in epoch " +
                        std::to_string(epoch_ + 1) + ", but its size() says " + std::to_string(known));
      }
      if (position == 0) throw DataError(stream.name() + " has no samples in epoch " + std::to_string(epoch_ + 1));
      break;
    }
    samples.push_back(std::move(*s));
  }
  if (loader_->options_.drop_last() && static_cast<int64_t>(samples.size()) < b) {
    if (index == 0) {
      throw DataError(stream.name() + " has " + std::to_string(samples.size()) + " samples in epoch " +
                      std::to_string(epoch_ + 1) + ", fewer than one batch of " + std::to_string(b) +
                      " with drop_last; lower the batch size");
    }
    samples.clear();
  }
  return samples;
}

Batch DataLoader::Epoch::assemble(std::vector<Sample> samples, int64_t index, const std::atomic<bool>* cancel) const {
  const int64_t first = index * loader_->options_.batch_size();
  std::vector<int64_t> positions(samples.size());
  for (size_t k = 0; k < samples.size(); ++k) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return Batch();
    positions[k] = first + static_cast<int64_t>(k);
    if (!loader_->options_.transforms().empty()) samples[k] = transformed(std::move(samples[k]), positions[k]);
  }
  return finish(collate(samples, positions, loader_->stream_->name()), index);
}

Batch DataLoader::Epoch::finish(Batch batch, int64_t index) const {
  const DataLoader& loader = *loader_;
  const auto& options = loader.options_;
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
  if (index < 0 || (size() >= 0 && index >= size())) {
    throw DataError("batch " + std::to_string(index) + " is out of range: the epoch has " + std::to_string(size()));
  }
  if (!loader_->stream_) return gather(index, nullptr);
  const auto reader = open(index * loader_->options_.batch_size());
  auto samples = read(*reader, index);
  if (samples.empty()) {
    throw DataError("batch " + std::to_string(index) + " is out of range: " + loader_->data_name() +
                    " ends before it in epoch " + std::to_string(epoch_ + 1));
  }
  return assemble(std::move(samples), index, nullptr);
}

// ---- BatchStream ---------------------------------------------------------------------------

/// The batches of one epoch from `first` on, in order. Without workers each is gathered when
/// asked for; with them, worker threads claim the next batch indices and gather up to
/// workers x prefetch batches ahead, and next() hands them out in index order. A stream's
/// reader is read by one worker at a time, in the order the batches were claimed; the workers
/// transform and stack what they read at once. A worker's error is raised by next() for the
/// batch it failed on, after every worker has stopped.
class BatchStream {
 public:
  BatchStream(DataLoader::Epoch epoch, int64_t first)
      : epoch_(std::move(epoch)), next_(first), claimed_(first), produced_(first), wanted_(first), read_turn_(first) {
    const DataLoader& loader = *epoch_.loader_;
    const int64_t size = epoch_.size();
    end_ = size >= 0 ? size : std::numeric_limits<int64_t>::max();
    if (loader.stream_ptr()) reader_ = epoch_.open(first * loader.options().batch_size());
    const int64_t workers = std::min<int64_t>(loader.options().workers(), end_ - first);
    capacity_ = std::max<int64_t>(1, loader.options().workers() * loader.options().prefetch());
    for (int64_t w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  ~BatchStream() { stop(); }
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  /// The next batch, or nothing past the epoch's end.
  std::optional<Batch> next() {
    if (threads_.empty() && ready_.empty()) {  // in this thread, nothing read ahead
      if (next_ >= end_) return std::nullopt;
      Slot slot = produce(next_);
      produced_ = ++next_;
      if (slot.error) std::rethrow_exception(slot.error);
      if (slot.batch.size() == 0) return std::nullopt;  // a stream ended
      return std::move(slot.batch);
    }
    if (!has(next_)) return std::nullopt;
    std::unique_lock<std::mutex> lock(mutex_);
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

  /// Whether batch `index` (next_ or the one after it) exists; it is gathered (or waited for)
  /// to know, and kept for next(). A batch that failed exists: next() raises its error.
  bool has(int64_t index) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (threads_.empty()) {
      while (produced_ <= index && produced_ < end_) {
        const int64_t i = produced_;
        lock.unlock();
        Slot slot = produce(i);
        lock.lock();
        produced_ = i + 1;
        if (slot.error || slot.batch.size() > 0) ready_.emplace(i, std::move(slot));
      }
    } else {
      if (index > wanted_) {
        wanted_ = index;  // workers may claim it even when it lies beyond the prefetch window
        space_cv_.notify_all();
      }
      ready_cv_.wait(lock, [&] { return ready_.count(index) > 0 || index >= end_; });
    }
    return ready_.count(index) > 0;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancel_.store(true);
    }
    space_cv_.notify_all();
    { std::lock_guard<std::mutex> lock(read_mutex_); }  // a worker between its check and its wait sees cancel_
    read_cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  // Gathers batch `index`; for a stream, an empty batch where the epoch ends (end_ is set).
  Slot produce(int64_t index) {
    Slot slot;
    try {
      if (!reader_) {
        slot.batch = epoch_.gather(index, &cancel_);
        return slot;
      }
      std::vector<Sample> samples;
      {
        // The reader is read in batch order: each worker waits for its batch's turn.
        std::unique_lock<std::mutex> lock(read_mutex_);
        read_cv_.wait(lock, [&] { return cancel_.load() || read_turn_ == index; });
        if (cancel_.load()) return slot;
        try {
          if (!read_over_) samples = epoch_.read(*reader_, index);
        } catch (...) {
          read_over_ = true;
          ++read_turn_;
          read_cv_.notify_all();
          throw;
        }
        // A short read is the stream's end: the reader is not asked again.
        if (static_cast<int64_t>(samples.size()) < epoch_.loader_->options().batch_size()) read_over_ = true;
        ++read_turn_;
        read_cv_.notify_all();
      }
      if (samples.empty()) {
        std::lock_guard<std::mutex> lock(mutex_);
        end_ = std::min(end_, index);
        return slot;
      }
      if (static_cast<int64_t>(samples.size()) < epoch_.loader_->options().batch_size()) {
        std::lock_guard<std::mutex> lock(mutex_);
        end_ = std::min(end_, index + 1);  // the stream ended inside this batch
      }
      slot.batch = epoch_.assemble(std::move(samples), index, &cancel_);
    } catch (...) {
      slot.error = std::current_exception();
    }
    return slot;
  }

  void work() {
    // Grad mode is per thread: no autograd bookkeeping for the data (not InferenceMode, whose
    // tensors could not be saved for the net's backward).
    torch::NoGradGuard no_grad;
#ifdef __linux__
    // A background thread: each batch it hands over wakes it, and under the normal policy the
    // woken worker preempts the training thread on its core (measured: 3-8% of a CNN's step
    // time lost on 2 cores). SCHED_BATCH keeps its fair share of the CPU without preempting.
    sched_param batch_policy{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch_policy);  // best effort
#endif
    for (;;) {
      int64_t index;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_cv_.wait(lock, [&] {
          return cancel_.load() || claimed_ >= end_ || claimed_ < next_ + capacity_ || claimed_ <= wanted_;
        });
        if (cancel_.load() || claimed_ >= end_) return;
        index = claimed_++;
      }
      Slot slot = produce(index);
      std::lock_guard<std::mutex> lock(mutex_);
      const bool failed = static_cast<bool>(slot.error);
      if (failed || slot.batch.size() > 0) ready_.emplace(index, std::move(slot));
      if (failed) {
        // Nothing after a failed batch is needed: the consumer raises its error when it gets there.
        end_ = std::min(end_, index + 1);
      }
      ready_cv_.notify_all();
      space_cv_.notify_all();
      if (index >= end_) return;  // a stream ended: nothing is left to claim
    }
  }

  DataLoader::Epoch epoch_;
  std::unique_ptr<StreamDataset::Reader> reader_;  // a stream's; null for a map-style dataset
  int64_t next_;          // the next batch next() hands out
  int64_t claimed_;       // the next batch a worker gathers
  int64_t produced_;      // without workers: the next batch to gather
  int64_t wanted_;        // the furthest batch has() was asked about
  int64_t end_;           // batches in the epoch (a stream's is found when it ends)
  int64_t capacity_ = 1;
  std::atomic<bool> cancel_{false};
  std::mutex mutex_;
  std::condition_variable ready_cv_, space_cv_;
  std::map<int64_t, Slot> ready_;
  std::vector<std::thread> threads_;
  // A stream's reader: whose turn it is to read, and whether the stream ended or failed (then
  // the batches claimed after it read nothing).
  std::mutex read_mutex_;
  std::condition_variable read_cv_;
  int64_t read_turn_;
  bool read_over_ = false;
};

DataLoader::Iterator::Iterator(std::shared_ptr<BatchStream> stream, int64_t index, int64_t size)
    : stream_(std::move(stream)), index_(index), size_(size) {}

bool DataLoader::Iterator::done() const {
  if (!stream_) return true;
  if (size_ >= 0) return index_ >= size_;
  if (!loaded_ && !at_end_) at_end_ = !stream_->has(index_);
  return at_end_;
}

bool DataLoader::Iterator::operator==(const Iterator& other) const {
  if (stream_ && other.stream_) return index_ == other.index_;
  return done() == other.done();
}

bool DataLoader::Iterator::last() const {
  if (size_ >= 0) return index_ + 1 == size_;
  return !done() && !stream_->has(index_ + 1);
}

const Batch& DataLoader::Iterator::operator*() const {
  if (!loaded_) {
    auto batch = done() ? std::nullopt : stream_->next();
    if (!batch) throw DataError("read past the end of the epoch");
    current_ = std::move(*batch);
    loaded_ = true;
  }
  return current_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  if (!loaded_ && !done()) stream_->next();  // skipped without being read: still consumed, in order
  current_ = Batch();
  loaded_ = false;
  at_end_ = false;
  ++index_;
  return *this;
}

DataLoader::Iterator DataLoader::Epoch::begin() const { return begin_at(0); }
DataLoader::Iterator DataLoader::Epoch::end() const { return Iterator(nullptr, size(), size()); }

DataLoader::Iterator DataLoader::Epoch::begin_at(int64_t batch) const {
  const int64_t n = size();
  const int64_t first = n >= 0 ? std::clamp<int64_t>(batch, 0, n) : std::max<int64_t>(batch, 0);
  return Iterator(n < 0 || first < n ? std::make_shared<BatchStream>(*this, first) : nullptr, first, n);
}

}  // namespace torchfit
