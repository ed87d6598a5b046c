// TensorDataset, random_split and DataLoader.
#include "torchfit/data.hpp"

#include <algorithm>

#include <cmath>
#include <numeric>
#include <random>

#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"

namespace torchfit {

TensorDataset::TensorDataset(torch::Tensor features, torch::Tensor targets)
    : features_(std::move(features)), targets_(std::move(targets)) {
  if (!features_.defined() || features_.dim() < 1) {
    throw DataError("a dataset's features must be a tensor with at least one dimension (samples first)");
  }
  if (targets_.defined() && (targets_.dim() < 1 || targets_.size(0) != features_.size(0))) {
    throw DataError("features have " + std::to_string(features_.size(0)) + " samples (shape " +
                    shape_string(features_.sizes()) + ") but targets have shape " + shape_string(targets_.sizes()) +
                    "; both need the same first dimension");
  }
}

TensorDataset TensorDataset::subset(const torch::Tensor& indices) const {
  auto idx = indices.to(features_.device());
  return TensorDataset(features_.index_select(0, idx),
                       targets_.defined() ? targets_.index_select(0, idx.to(targets_.device())) : torch::Tensor());
}

TensorDataset TensorDataset::to(torch::Device device, bool non_blocking) const {
  if (features_.device() == device && (!targets_.defined() || targets_.device() == device)) {
    return *this;
  }
  return TensorDataset(features_.to(device, non_blocking).contiguous(),
                       targets_.defined() ? targets_.to(device, non_blocking).contiguous() : torch::Tensor());
}

torch::Tensor seeded_permutation(int64_t n, uint64_t seed, uint64_t epoch) {
  // A SplitMix-style mix so (seed, epoch) pairs never collide in practice; Fisher-Yates
  // with std::mt19937_64 is the same on every platform and every LibTorch version.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (epoch + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  std::mt19937_64 rng(z);
  auto perm = torch::empty({n}, torch::kLong);
  auto* p = perm.data_ptr<int64_t>();
  std::iota(p, p + n, int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    std::uniform_int_distribution<int64_t> pick(0, i);
    std::swap(p[i], p[pick(rng)]);
  }
  return perm;
}

std::vector<TensorDataset> random_split(const TensorDataset& dataset, const std::vector<int64_t>& counts,
                                        uint64_t seed) {
  if (dataset.empty()) {
    throw DataError("cannot split an empty dataset");
  }
  int64_t total = 0;
  for (auto c : counts) {
    if (c < 0) {
      throw DataError("random_split: count " + std::to_string(c) + " is negative");
    }
    total += c;
  }
  if (counts.empty() || total != dataset.size()) {
    throw DataError("random_split: the counts add up to " + std::to_string(total) + " but the dataset has " +
                    std::to_string(dataset.size()) + " samples");
  }
  auto perm = seeded_permutation(dataset.size(), seed, 0);
  std::vector<TensorDataset> parts;
  int64_t start = 0;
  for (auto c : counts) {
    parts.push_back(dataset.subset(perm.narrow(0, start, c)));
    start += c;
  }
  return parts;
}

std::vector<TensorDataset> random_split(const TensorDataset& dataset, const std::vector<double>& fractions,
                                        uint64_t seed) {
  double sum = 0;
  for (auto f : fractions) {
    if (!(f >= 0 && f <= 1)) {
      throw DataError("random_split: fraction " + std::to_string(f) + " is not between 0 and 1");
    }
    sum += f;
  }
  if (fractions.empty() || std::fabs(sum - 1.0) > 1e-6) {
    throw DataError("random_split: the fractions add up to " + std::to_string(sum) +
                    ", not 1; give fractions that add up to 1 (e.g. {0.7, 0.3}) or sample counts");
  }
  // Floor each part, then hand the remainder out one by one, as torch.utils.data.random_split does.
  const int64_t n = dataset.size();
  std::vector<int64_t> counts;
  int64_t assigned = 0;
  for (auto f : fractions) {
    counts.push_back(static_cast<int64_t>(std::floor(f * static_cast<double>(n))));
    assigned += counts.back();
  }
  for (size_t i = 0; assigned < n; i = (i + 1) % counts.size(), ++assigned) {
    ++counts[i];
  }
  return random_split(dataset, counts, seed);
}

DataLoader::DataLoader(TensorDataset dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (dataset_.empty()) {
    throw DataError("cannot make a loader over an empty dataset");
  }
  if (options_.batch_size() < 1) {
    throw DataError("batch size must be at least 1, got " + std::to_string(options_.batch_size()));
  }
  if (options_.drop_last() && options_.batch_size() > dataset_.size()) {
    throw DataError("batch size " + std::to_string(options_.batch_size()) + " with drop_last leaves no batch of the " +
                    std::to_string(dataset_.size()) + " samples; lower the batch size");
  }
  seed_ = options_.seed() ? *options_.seed()
                          : static_cast<uint64_t>(torch::randint(0, int64_t{1} << 62, {1}, torch::kLong).item<int64_t>());
}

int64_t DataLoader::epoch_size() const {
  const auto n = dataset_.size();
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
  const bool host_data = dataset_.features().device().is_cpu();
  if (options_.pin_memory() && device.is_cuda() && host_data) {
    if (copy_to_ == device) return copy;
    auto pin = [](const torch::Tensor& t) { return t.defined() && !t.is_pinned() ? t.contiguous().pin_memory() : t; };
    copy.dataset_ = TensorDataset(pin(dataset_.features()), pin(dataset_.targets()));
    copy.copy_to_ = device;
    return copy;
  }
  copy.copy_to_.reset();
  copy.dataset_ = dataset_.to(device);
  return copy;
}

torch::Device DataLoader::batch_device() const { return copy_to_ ? *copy_to_ : dataset_.features().device(); }

DataLoader::Epoch DataLoader::epoch(uint64_t epoch) const {
  const auto device = dataset_.features().device();
  if (shard_count_ > 1) {
    // Like torch.utils.data.DistributedSampler: the one global order of this epoch (the same
    // on every process), padded with its first samples to a multiple of the process count
    // when `pad`, then every count-th sample from position `rank`.
    const auto n = dataset_.size();
    auto order = options_.shuffle() ? seeded_permutation(n, seed_, epoch) : torch::arange(n, torch::kLong);
    int64_t total = n;
    if (shard_pad_) {
      total = (n + shard_count_ - 1) / shard_count_ * shard_count_;
      order = order.index_select(0, torch::arange(total, torch::kLong).remainder(n));
    }
    return Epoch(*this, order.slice(0, shard_rank_, total, shard_count_).contiguous().to(device));
  }
  if (!options_.shuffle()) {
    return Epoch(*this, torch::Tensor());
  }
  return Epoch(*this, seeded_permutation(dataset_.size(), seed_, epoch).to(device));
}

DataLoader::Iterator DataLoader::Epoch::begin() const { return Iterator(this, 0); }
DataLoader::Iterator DataLoader::Epoch::end() const { return Iterator(this, loader_->num_batches()); }

DataLoader::Iterator DataLoader::Epoch::begin_at(int64_t batch) const {
  return Iterator(this, std::clamp<int64_t>(batch, 0, loader_->num_batches()));
}

Batch DataLoader::Epoch::batch(int64_t index) const {
  const auto& ds = loader_->dataset_;
  const int64_t b = loader_->options_.batch_size();
  const int64_t start = index * b;
  const int64_t len = std::min(b, loader_->epoch_size() - start);
  torch::Tensor idx;
  if (order_.defined()) idx = order_.narrow(0, start, len);
  auto rows = [&](const torch::Tensor& t) -> torch::Tensor {
    if (!t.defined()) return t;
    if (!loader_->copy_to_) return idx.defined() ? t.index_select(0, idx) : t.narrow(0, start, len);
    // pin_memory: gather into pinned memory (a slice of the pinned data already is), then an
    // asynchronous copy. LibTorch's pinned-memory cache keeps the buffer until the copy is done.
    torch::Tensor host = t.narrow(0, start, len);
    if (idx.defined()) {
      auto sizes = t.sizes().vec();
      sizes[0] = len;
      host = torch::empty(sizes, t.options().pinned_memory(true));
      torch::index_select_out(host, t, 0, idx);
    }
    return host.to(*loader_->copy_to_, /*non_blocking=*/true);
  };
  return {rows(ds.features()), rows(ds.targets())};
}

Batch DataLoader::Iterator::operator*() const { return epoch_->batch(index_); }

}  // namespace torchfit
