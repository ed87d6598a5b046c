// TensorDataset, subsets, random_split and the default get_batch.
#include "torchfit/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "data_errors.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

namespace detail {
void torch_dataset_has_no_size(const std::string& name) {
  throw DataError(name + " does not know its size (a stream dataset): from_torch() takes map-style datasets, whose "
                  "size() returns a number; read a stream through a torchfit::StreamDataset instead");
}
}  // namespace detail

Sample Dataset::sample(int64_t index) const {
  return detail::as_data_error([&] { return name() + " failed on sample " + std::to_string(index); },
                               [&] { return get(index); });
}

Batch Dataset::get_batch(const torch::Tensor& indices) const {
  const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* p = idx.data_ptr<int64_t>();
  std::vector<int64_t> ids(p, p + idx.numel());
  std::vector<Sample> samples;
  samples.reserve(ids.size());
  for (const int64_t i : ids) samples.push_back(sample(i));
  return collate(samples, ids, name());
}

// ---- Streams -------------------------------------------------------------------------------

int64_t skip(StreamDataset::Reader& reader, int64_t count) {
  int64_t skipped = 0;
  while (skipped < count && reader.next()) ++skipped;
  return skipped;
}

namespace {

class GeneratedStream final : public StreamDataset {
 public:
  using Make = std::function<std::optional<Sample>(uint64_t, int64_t)>;
  GeneratedStream(Make make, std::string name, std::optional<int64_t> size)
      : make_(std::make_shared<Make>(std::move(make))), name_(std::move(name)), size_(size) {}

  std::unique_ptr<Reader> open(uint64_t epoch, int64_t start) const override {
    return std::make_unique<GeneratedReader>(make_, epoch, start);
  }
  std::string name() const override { return name_; }
  std::optional<int64_t> size() const override { return size_; }

 private:
  class GeneratedReader final : public Reader {
   public:
    GeneratedReader(std::shared_ptr<const Make> make, uint64_t epoch, int64_t start)
        : make_(std::move(make)), epoch_(epoch), index_(start) {}
    std::optional<Sample> next() override {
      if (done_) return std::nullopt;
      auto s = (*make_)(epoch_, index_++);
      done_ = !s;
      return s;
    }

   private:
    std::shared_ptr<const Make> make_;
    uint64_t epoch_;
    int64_t index_;
    bool done_ = false;
  };

  std::shared_ptr<const Make> make_;
  std::string name_;
  std::optional<int64_t> size_;
};

}  // namespace

std::shared_ptr<StreamDataset> generated_stream(std::function<std::optional<Sample>(uint64_t, int64_t)> make,
                                                std::string name, std::optional<int64_t> size) {
  if (!make) throw DataError("generated_stream needs a function that makes the samples");
  if (size && *size < 1) throw DataError("a generated stream of " + std::to_string(*size) + " samples has none");
  return std::make_shared<GeneratedStream>(std::move(make), std::move(name), size);
}

// ---- TensorDataset -------------------------------------------------------------------------

namespace {
Fields pair_fields(torch::Tensor features, torch::Tensor targets) {
  if (!features.defined() || features.dim() < 1) {
    throw DataError("a dataset's features must be a tensor with at least one dimension (samples first)");
  }
  if (targets.defined() && (targets.dim() < 1 || targets.size(0) != features.size(0))) {
    throw DataError("features have " + std::to_string(features.size(0)) + " samples (shape " +
                    shape_string(features.sizes()) + ") but targets have shape " + shape_string(targets.sizes()) +
                    "; both need the same first dimension");
  }
  Fields f;
  f.add_input("x", std::move(features));
  if (targets.defined()) f.add_target("y", std::move(targets));
  return f;
}
}  // namespace

TensorDataset::TensorDataset(torch::Tensor features, torch::Tensor targets)
    : fields_(pair_fields(std::move(features), std::move(targets))) {}

TensorDataset::TensorDataset(Fields fields) : fields_(std::move(fields)) {
  if (fields_.empty()) throw DataError("a tensor dataset needs at least one field");
  for (size_t i = 0; i < fields_.count(); ++i) {
    const auto& t = fields_[i];
    if (!t.defined() || t.dim() < 1) {
      throw DataError("field '" + fields_.name(i) + "' of a tensor dataset must be a tensor with at least one "
                      "dimension (samples first)");
    }
    if (t.size(0) != fields_[size_t{0}].size(0)) {
      throw DataError("the fields of a tensor dataset need the same number of samples, but they are: " +
                      fields_.describe());
    }
  }
}

int64_t TensorDataset::size() const { return fields_.empty() ? 0 : fields_[size_t{0}].size(0); }

const torch::Tensor& TensorDataset::features() const {
  static const torch::Tensor none;
  return fields_.count(Role::Input) ? fields_.input() : none;
}

const torch::Tensor& TensorDataset::targets() const {
  static const torch::Tensor none;
  return fields_.has_targets() ? fields_.target() : none;
}

torch::Device TensorDataset::device() const {
  return fields_.empty() ? torch::Device(torch::kCPU) : fields_[size_t{0}].device();
}

Sample TensorDataset::get(int64_t index) const {
  if (index < 0 || index >= size()) {
    throw DataError("sample " + std::to_string(index) + " is out of range: the dataset has " + std::to_string(size()));
  }
  Sample s;
  for (size_t i = 0; i < fields_.count(); ++i) s.add(fields_.name(i), fields_[i][index].clone(), fields_.role(i));
  return s;
}

Batch TensorDataset::get_batch(const torch::Tensor& indices) const {
  Fields out;
  for (size_t i = 0; i < fields_.count(); ++i) {
    const auto& t = fields_[i];
    out.add(fields_.name(i), t.index_select(0, indices.device() == t.device() ? indices : indices.to(t.device())),
            fields_.role(i));
  }
  return Batch(std::move(out));
}

TensorDataset TensorDataset::keeping_labels(Fields fields) const {
  TensorDataset out(std::move(fields));
  out.name_ = name_;
  out.classes_ = classes_;
  return out;
}

TensorDataset TensorDataset::named(std::string name) const {
  TensorDataset out(*this);
  out.name_ = std::move(name);
  return out;
}

TensorDataset TensorDataset::with_classes(std::vector<std::string> classes) const {
  TensorDataset out(*this);
  out.classes_ = std::move(classes);
  return out;
}

TensorDataset TensorDataset::subset(const torch::Tensor& indices) const {
  return keeping_labels(Fields(get_batch(indices)));
}

TensorDataset TensorDataset::to(torch::Device device, bool non_blocking) const {
  bool there = true;
  for (size_t i = 0; i < fields_.count(); ++i) there = there && fields_[i].device() == device;
  if (there) return *this;
  Fields moved;
  for (size_t i = 0; i < fields_.count(); ++i) {
    moved.add(fields_.name(i), fields_[i].to(device, non_blocking).contiguous(), fields_.role(i));
  }
  return keeping_labels(std::move(moved));
}

std::shared_ptr<const Dataset> TensorDataset::on_device(torch::Device device) const {
  return std::make_shared<TensorDataset>(to(device));
}

// ---- subsets -------------------------------------------------------------------------------

namespace {
class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
      : base_(std::move(base)), indices_(std::move(indices)) {
    const int64_t n = base_->size();
    for (const int64_t i : indices_) {
      if (i < 0 || i >= n) {
        throw DataError("subset index " + std::to_string(i) + " is out of range: " + base_->name() + " has " +
                        std::to_string(n) + " samples");
      }
    }
    map_ = torch::from_blob(indices_.data(), {static_cast<int64_t>(indices_.size())}, torch::kLong);
  }
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Sample get(int64_t index) const override { return base_->get(indices_.at(static_cast<size_t>(index))); }
  Batch get_batch(const torch::Tensor& indices) const override {
    const auto base_indices = map_.index_select(0, indices.to(torch::kCPU, torch::kLong));
    return base_->get_batch(base_indices.to(base_->device()));
  }
  std::string name() const override { return base_->name(); }
  torch::Device device() const override { return torch::kCPU; }
  std::vector<std::string> classes() const override { return base_->classes(); }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
  torch::Tensor map_;  // a view of indices_
};
}  // namespace

std::shared_ptr<Dataset> subset(std::shared_ptr<const Dataset> dataset, std::vector<int64_t> indices) {
  if (!dataset) throw DataError("subset of a null dataset");
  return std::make_shared<SubsetDataset>(std::move(dataset), std::move(indices));
}

// ---- splits --------------------------------------------------------------------------------

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

namespace {
// Sample counts from fractions: floor each part, then hand the remainder out one by one, as
// torch.utils.data.random_split does.
std::vector<int64_t> split_counts(int64_t n, const std::vector<double>& fractions) {
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
  std::vector<int64_t> counts;
  int64_t assigned = 0;
  for (auto f : fractions) {
    counts.push_back(static_cast<int64_t>(std::floor(f * static_cast<double>(n))));
    assigned += counts.back();
  }
  for (size_t i = 0; assigned < n; i = (i + 1) % counts.size(), ++assigned) {
    ++counts[i];
  }
  return counts;
}
}  // namespace

std::vector<TensorDataset> random_split(const TensorDataset& dataset, const std::vector<double>& fractions,
                                        uint64_t seed) {
  return random_split(dataset, split_counts(dataset.size(), fractions), seed);
}

std::vector<std::shared_ptr<Dataset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                   const std::vector<double>& fractions, uint64_t seed) {
  if (!dataset || dataset->size() == 0) throw DataError("cannot split an empty dataset");
  const auto counts = split_counts(dataset->size(), fractions);
  const auto perm = seeded_permutation(dataset->size(), seed, 0);
  const int64_t* p = perm.data_ptr<int64_t>();
  std::vector<std::shared_ptr<Dataset>> parts;
  int64_t start = 0;
  for (const auto c : counts) {
    parts.push_back(subset(dataset, std::vector<int64_t>(p + start, p + start + c)));
    start += c;
  }
  return parts;
}


}  // namespace torchfit
