// Datasets: the map-style interface (size + one sample by index), in-memory tensors, subsets, LibTorch's own datasets; streams.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// A map-style dataset, like torch.utils.data.Dataset and LibTorch's datasets::Dataset: a
/// known size and one sample by index. The loader asks for samples from its worker threads at
/// once, so get() and get_batch() must be safe to call concurrently (reading is; a dataset
/// that caches or opens files per call must lock). Neither may return views of storage the
/// dataset keeps: a transform or a callback could write into them.
class TORCHFIT_EXPORT Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Sample `index` (0 <= index < size()): its fields without the sample dimension.
  virtual Sample get(int64_t index) const = 0;
  /// get(index), with any error it throws turned into a DataError that names the sample and
  /// this dataset ("numbers failed on sample 37: ...").
  Sample sample(int64_t index) const;
  /// The samples at `indices` (an int64 tensor on device()) as one batch. By default sample()
  /// for each, stacked with collate(); override it with a faster gather (TensorDataset: one
  /// index_select per field).
  virtual Batch get_batch(const torch::Tensor& indices) const;
  /// How messages name this dataset ("CSV file train.csv", "fashion_mnist train").
  virtual std::string name() const { return "dataset"; }
  /// Where get_batch() wants its indices and returns its tensors.
  virtual torch::Device device() const { return torch::kCPU; }
  /// This dataset with its tensors on `device`, for one that can move as a whole (the loader
  /// then gathers batches there); null (the default) when it cannot: each batch is moved as it
  /// is read instead.
  virtual std::shared_ptr<const Dataset> on_device(torch::Device device) const { return nullptr; }
  /// The class names of a classification set, in the order of their indices (the target's
  /// values 0, 1, ...), like torchvision's `dataset.classes`; empty when unknown or not
  /// classification. evaluate's per-class table and predict's columns use them.
  virtual std::vector<std::string> classes() const { return {}; }
};

/// An iterable (streaming) dataset, like torch.utils.data.IterableDataset: samples read in
/// order, their number possibly unknown until the stream ends (a file larger than memory,
/// data generated on the fly). Every epoch opens a reader of its own; the loader reads it from
/// one thread at a time, in order, while its workers transform and stack what was read.
///
/// Resume: open(epoch, start) must give what an uninterrupted read of epoch `epoch` gives from
/// position `start` on. A stream that cannot seek reads and drops `start` samples (skip()),
/// which is exact whenever each epoch reads the same way every time it is opened (a file; data
/// generated from a seed and the epoch). A stream is never shuffled by the loader (shuffle
/// inside it, seeded by the epoch) and cannot be sharded for data-parallel training.
class TORCHFIT_EXPORT StreamDataset {
 public:
  class TORCHFIT_EXPORT Reader {
   public:
    virtual ~Reader() = default;
    /// The next sample (its fields without the sample dimension), or nothing at the epoch's end.
    virtual std::optional<Sample> next() = 0;
  };
  virtual ~StreamDataset() = default;
  /// A reader of epoch `epoch` (0-based) positioned at sample `start` of that epoch. Called
  /// from any thread; the reader it returns is used by one thread at a time.
  virtual std::unique_ptr<Reader> open(uint64_t epoch, int64_t start) const = 0;
  /// How messages name this stream.
  virtual std::string name() const { return "stream"; }
  /// Samples per epoch when known (then progress bars and schedules know the epoch's length,
  /// and an epoch is the first size() samples; a stream that ends sooner is an error). Unknown
  /// by default: an epoch ends where the reader does.
  virtual std::optional<int64_t> size() const { return std::nullopt; }
};

/// Reads and drops up to `count` samples of `reader` (a stream that cannot seek, positioned
/// for a resume); returns how many there were.
TORCHFIT_EXPORT int64_t skip(StreamDataset::Reader& reader, int64_t count);

/// A stream whose sample `index` of epoch `epoch` is `make(epoch, index)`, the epoch ending
/// where it returns nothing (or after `size` samples, when given): data generated on the fly,
/// never held in memory. `make` is called from one thread at a time and must depend on
/// (epoch, index) only (draw from Rng(Rng::seed_for(seed, epoch, index))), which makes the
/// stream seek at once and a resume exact.
TORCHFIT_EXPORT std::shared_ptr<StreamDataset> generated_stream(
    std::function<std::optional<Sample>(uint64_t epoch, int64_t index)> make, std::string name = "generated stream",
    std::optional<int64_t> size = std::nullopt);

/// Fields whose first dimension is the sample index, all in memory: `TensorDataset(x, y)` for
/// the classic pair (fields "x" and "y"), or named fields for several inputs and targets.
/// Copies share the tensors. Targets may be absent (data to predict on).
class TORCHFIT_EXPORT TensorDataset : public Dataset {
 public:
  TensorDataset() = default;
  /// Throws DataError when the two first dimensions differ or the features are not at least 1-D.
  explicit TensorDataset(torch::Tensor features, torch::Tensor targets = {});
  /// Named fields (`Fields().add_input("image", x).add_input("side", s).add_target("label", y)`):
  /// throws DataError unless every field is defined, at least 1-D and of the same length.
  explicit TensorDataset(Fields fields);

  int64_t size() const override;
  bool empty() const { return size() == 0; }
  /// Row `index` of every field (a copy).
  Sample get(int64_t index) const override;
  /// One index_select per field.
  Batch get_batch(const torch::Tensor& indices) const override;
  std::string name() const override { return name_; }
  torch::Device device() const override;
  std::shared_ptr<const Dataset> on_device(torch::Device device) const override;
  std::vector<std::string> classes() const override { return classes_; }
  /// The same data under another name (messages) and with class names (copies share the tensors).
  TensorDataset named(std::string name) const;
  TensorDataset with_classes(std::vector<std::string> classes) const;

  const Fields& fields() const { return fields_; }
  /// The first input and the first target (undefined when there is none).
  const torch::Tensor& features() const;
  const torch::Tensor& targets() const;
  bool has_targets() const { return fields_.has_targets(); }
  /// The samples at `indices` (an int64 tensor), gathered with index_select.
  TensorDataset subset(const torch::Tensor& indices) const;
  /// A copy on `device` (a no-op when already there).
  TensorDataset to(torch::Device device, bool non_blocking = false) const;

 private:
  TensorDataset keeping_labels(Fields fields) const;  // new fields, this name and these classes
  Fields fields_;
  std::string name_ = "tensor dataset";
  std::vector<std::string> classes_;
};

/// The samples of `dataset` at `indices`, in that order, without copying them (a training and
/// a validation part of one large dataset). Throws DataError for an index out of range.
TORCHFIT_EXPORT std::shared_ptr<Dataset> subset(std::shared_ptr<const Dataset> dataset, std::vector<int64_t> indices);

/// Splits `dataset` at random into parts of the given fractions (which must add up to 1) or
/// counts (which must add up to the size), like torch.utils.data.random_split. The same seed
/// always gives the same parts; the parts are disjoint and together hold every sample.
TORCHFIT_EXPORT std::vector<TensorDataset> random_split(const TensorDataset& dataset,
                                                        const std::vector<double>& fractions, uint64_t seed);
TORCHFIT_EXPORT std::vector<TensorDataset> random_split(const TensorDataset& dataset,
                                                        const std::vector<int64_t>& counts, uint64_t seed);
/// The same for any dataset: subset() views, nothing copied.
TORCHFIT_EXPORT std::vector<std::shared_ptr<Dataset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                                   const std::vector<double>& fractions,
                                                                   uint64_t seed);

/// A permutation of 0..n-1 that depends only on (seed, epoch): the loader's shuffle, and
/// the reason a resumed run sees the same batches as an uninterrupted one.
TORCHFIT_EXPORT torch::Tensor seeded_permutation(int64_t n, uint64_t seed, uint64_t epoch);

namespace detail {
/// Turns one of LibTorch's examples into a sample: "x" (its data) and "y" (its target, when it
/// has one); with `copy`, copies that never alias the dataset's storage (a batch needs none:
/// stacking copies).
template <typename Example>
Sample sample_of(const Example& example, bool copy) {
  Sample s;
  s.add_input("x", copy ? example.data.clone() : example.data);
  if constexpr (!std::is_same_v<std::decay_t<decltype(example.target)>, torch::data::example::NoTarget>) {
    s.add_target("y", copy ? example.target.clone() : example.target);
  }
  return s;
}
[[noreturn]] TORCHFIT_EXPORT void torch_dataset_has_no_size(const std::string& name);
}  // namespace detail

/// One of LibTorch's own map-style datasets, unchanged: `torch::data::datasets::MNIST(root)`,
/// any `torch::data::datasets::Dataset<Self>` subclass, or one `.map()`ped with per-example
/// transforms. Its examples become samples with the input "x" and the target "y". LibTorch's
/// loader calls get_batch() from its workers at once, and so does torchfit's.
template <typename TorchDataset>
class TorchDatasetAdapter : public Dataset {
 public:
  explicit TorchDatasetAdapter(TorchDataset dataset, std::string name = "LibTorch dataset")
      : dataset_(std::move(dataset)), name_(std::move(name)) {
    const auto n = dataset_.size();
    if (!n) detail::torch_dataset_has_no_size(name_);
    size_ = static_cast<int64_t>(*n);
  }
  int64_t size() const override { return size_; }
  Sample get(int64_t index) const override {
    const std::vector<size_t> one{static_cast<size_t>(index)};
    return detail::sample_of(dataset_.get_batch(one).at(0), true);
  }
  Batch get_batch(const torch::Tensor& indices) const override {
    const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t* p = idx.data_ptr<int64_t>();
    const std::vector<size_t> request(p, p + idx.numel());
    auto examples = dataset_.get_batch(request);
    std::vector<Sample> samples;
    samples.reserve(examples.size());
    for (const auto& e : examples) samples.push_back(detail::sample_of(e, false));
    return collate(samples, std::vector<int64_t>(p, p + idx.numel()), name_);
  }
  std::string name() const override { return name_; }

 private:
  mutable TorchDataset dataset_;  // LibTorch's get_batch is not const
  std::string name_;
  int64_t size_ = 0;
};

/// `DataLoader(from_torch(torch::data::datasets::MNIST(root)), 64)`.
template <typename TorchDataset>
std::shared_ptr<Dataset> from_torch(TorchDataset dataset, std::string name = "LibTorch dataset") {
  return std::make_shared<TorchDatasetAdapter<std::decay_t<TorchDataset>>>(std::move(dataset), std::move(name));
}

}  // namespace torchfit
