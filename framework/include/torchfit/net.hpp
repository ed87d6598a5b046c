// Net: a type-erased holder for any torch::nn::Module with `Tensor forward(Tensor)`.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "torchfit/export.hpp"

namespace torchfit {

/// Holds a user's module (a TORCH_MODULE holder such as `torch::nn::Linear` or
/// `torch::nn::Sequential`, or a `std::shared_ptr<MyNetImpl>`) behind one interface, so the
/// trainer works with any net. Copies share the same module.
class TORCHFIT_EXPORT Net {
 public:
  Net() = default;

  /// From a module holder (`torch::nn::Linear(2, 1)`, `MyNet()` made with TORCH_MODULE).
  template <typename Holder,
            std::enable_if_t<std::is_base_of_v<torch::detail::ModuleHolderIndicator, std::decay_t<Holder>>,
                             int> = 0>
  Net(Holder holder)  // NOLINT: implicit on purpose, so `Trainer(torch::nn::Linear(2, 1), ...)` reads well
      : Net(holder.ptr()) {}

  /// From a shared pointer to a module implementation.
  template <typename Impl, std::enable_if_t<std::is_base_of_v<torch::nn::Module, Impl>, int> = 0>
  Net(std::shared_ptr<Impl> impl)  // NOLINT: implicit on purpose
      : module_(impl), forward_([raw = impl.get()](const torch::Tensor& x) -> torch::Tensor {
          return raw->forward(x);
        }) {}

  torch::Tensor forward(const torch::Tensor& x) const { return forward_(x); }
  torch::Tensor operator()(const torch::Tensor& x) const { return forward_(x); }

  explicit operator bool() const { return static_cast<bool>(module_); }
  torch::nn::Module& module() const { return *module_; }
  const std::shared_ptr<torch::nn::Module>& ptr() const { return module_; }
  std::vector<torch::Tensor> parameters() const { return module_->parameters(); }
  void train(bool on = true) const { module_->train(on); }
  void eval() const { module_->eval(); }
  void to(torch::Device device) const { module_->to(device); }

  /// Keeps `owner` (the shared library that made this net) alive as long as this net and its
  /// copies. Destroyed after the module, so the module's code is still loaded when it dies.
  void keep_alive(std::shared_ptr<void> owner) { owner_ = std::move(owner); }

  /// The model's name (a model plugin's name), stored in checkpoints so that loading
  /// another model's weights is refused by name. Empty for nets made in code.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

 private:
  std::shared_ptr<void> owner_;  // first member: destroyed last
  std::string name_;
  std::shared_ptr<torch::nn::Module> module_;
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
};

}  // namespace torchfit
