// Loss: any callable (preds, targets) -> scalar Tensor, with a shape check that names both shapes.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "torchfit/export.hpp"

namespace torchfit {

/// What a loss expects of the targets' shape, checked on every batch (a cheap size compare)
/// because LibTorch would otherwise broadcast `[N, 1]` against `[N]` without a word.
enum class TargetShape {
  Same,          ///< targets have the predictions' shape (MSE, BCE, L1, ...)
  ClassIndices,  ///< predictions [N, C, ...], targets [N, ...] of class indices (cross-entropy, NLL)
  Any,           ///< no check
};

class TORCHFIT_EXPORT Loss {
 public:
  using Fn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

  Loss() = default;
  Loss(Fn fn, std::string name = "loss", TargetShape shape = TargetShape::Same)
      : fn_(std::move(fn)), name_(std::move(name)), shape_(shape) {}

  /// From a LibTorch loss module: `torch::nn::MSELoss()`, `torch::nn::BCEWithLogitsLoss()`,
  /// `torch::nn::CrossEntropyLoss()`, ...
  template <typename Holder,
            std::enable_if_t<std::is_base_of_v<torch::detail::ModuleHolderIndicator, std::decay_t<Holder>>,
                             int> = 0>
  Loss(Holder holder)  // NOLINT: implicit on purpose
      : fn_([impl = holder.ptr()](const torch::Tensor& p, const torch::Tensor& t) { return impl->forward(p, t); }),
        name_(holder->name()),
        shape_(targets_for(holder->name())) {}

  /// Checks the shapes, then computes the loss. Throws DataError naming both shapes.
  torch::Tensor operator()(const torch::Tensor& preds, const torch::Tensor& targets) const {
    check(preds, targets);
    return fn_(preds, targets);
  }
  /// Throws DataError when `targets` cannot go with `preds` under this loss's TargetShape.
  void check(const torch::Tensor& preds, const torch::Tensor& targets) const;

  explicit operator bool() const { return static_cast<bool>(fn_); }
  const std::string& name() const { return name_; }
  TargetShape target_shape() const { return shape_; }
  void keep_alive(std::shared_ptr<void> owner) { owner_ = std::move(owner); }

 private:
  static TargetShape targets_for(const std::string& module_name);

  std::shared_ptr<void> owner_;  // first member: destroyed last
  Fn fn_;
  std::string name_ = "loss";
  TargetShape shape_ = TargetShape::Same;
};

/// One of the losses of a net with several outputs, like Keras' `loss={"cls": ..., "reg": ...}`
/// with `loss_weights`: `{"cls", torch::nn::CrossEntropyLoss()}`, `{"reg", torch::nn::MSELoss(), 0.5}`.
/// Each is logged as its own column (train_cls_loss, val_reg_loss); the trainer minimizes
/// their weighted sum, logged as train_loss / val_loss.
struct OutputLoss {
  std::string output;   ///< the net's output it scores (Net::output_names, or the keys of a returned map)
  Loss loss;
  double weight = 1.0;  ///< its factor in the total loss
  std::string target;   ///< the batch's target field it compares with; empty: the one named like the output
};
using Losses = std::vector<OutputLoss>;


}  // namespace torchfit
