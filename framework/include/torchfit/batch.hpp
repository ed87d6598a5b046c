// Fields, Sample and Batch: named tensors, each an input of the net or a target, for data of any structure.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// What a field is for: fed to the net (in order), compared with the net's outputs, or produced by the net.
enum class Role : uint8_t { Input, Target, Output };

/// Named tensors in order, each with a Role: one sample, one batch (samples first) or a net's
/// outputs. Read a field by name (`batch["image"]`) or by position (`batch[0]`); a name that is
/// not there throws DataError listing the names that are.
class TORCHFIT_EXPORT Fields {
 public:
  Fields() = default;

  /// Appends a field; throws DataError when the name is empty or already taken.
  Fields& add(std::string name, torch::Tensor tensor, Role role = Role::Input);
  Fields& add_input(std::string name, torch::Tensor tensor) { return add(std::move(name), std::move(tensor)); }
  Fields& add_target(std::string name, torch::Tensor tensor) {
    return add(std::move(name), std::move(tensor), Role::Target);
  }

  size_t count() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  bool contains(const std::string& name) const { return find(name) < fields_.size(); }
  /// Position of `name`, or count() when there is none.
  size_t find(const std::string& name) const;

  torch::Tensor& operator[](const std::string& name);
  const torch::Tensor& operator[](const std::string& name) const;
  torch::Tensor& operator[](size_t index);
  const torch::Tensor& operator[](size_t index) const;
  const std::string& name(size_t index) const { return fields_.at(index).name; }
  Role role(size_t index) const { return fields_.at(index).role; }

  /// How many fields have `role`.
  size_t count(Role role) const;
  /// The `i`-th input / target in order (`batch.input()` for a net of one input). Throws
  /// DataError naming the fields when there is no such one.
  const torch::Tensor& input(size_t i = 0) const { return nth(Role::Input, i); }
  const torch::Tensor& target(size_t i = 0) const { return nth(Role::Target, i); }
  bool has_targets() const { return count(Role::Target) > 0; }
  /// The inputs in order: what a net of several inputs is called with.
  std::vector<torch::Tensor> inputs() const;
  /// The names of the fields with `role`, in order.
  std::vector<std::string> names(Role role) const;
  /// "x [32, 2] Float, y [32, 1] Float (target)": for messages.
  std::string describe() const;

 private:
  const torch::Tensor& nth(Role role, size_t i) const;
  [[noreturn]] void missing(const std::string& what) const;

  struct Field {
    std::string name;
    torch::Tensor tensor;
    Role role;
  };
  std::vector<Field> fields_;
};

/// One sample of a dataset: its fields without the sample dimension.
using Sample = Fields;
/// What a net returned, as named fields (Role::Output): "output" for a net with one output.
using Outputs = Fields;

/// A batch: fields whose first dimension is the sample. `Batch(x, y)` is the classic pair,
/// the input "x" and the target "y".
class TORCHFIT_EXPORT Batch : public Fields {
 public:
  Batch() = default;
  explicit Batch(Fields fields) : Fields(std::move(fields)) {}
  explicit Batch(torch::Tensor x, torch::Tensor y = {});
  /// Samples in the batch (the first field's first dimension; 0 without fields).
  int64_t size() const;
  /// Every field on `device` (a no-op for those already there).
  Batch to(torch::Device device, bool non_blocking = false) const;
  /// Every field in pinned host memory (CPU fields only), for an asynchronous copy to a GPU.
  Batch pinned() const;
};

/// Stacks samples into a batch (torch::stack per field). `indices` are the samples' indices in
/// `dataset` (named in messages): a sample whose field names, roles, shapes or dtypes differ from
/// the first sample's throws DataError naming both samples and the field.
TORCHFIT_EXPORT Batch collate(const std::vector<Sample>& samples, const std::vector<int64_t>& indices,
                              const std::string& dataset);

}  // namespace torchfit
