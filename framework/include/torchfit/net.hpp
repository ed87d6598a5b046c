// Net: a type-erased holder for any torch::nn::Module: one or several inputs, one or several outputs.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

namespace detail {

template <typename T>
struct is_tuple : std::false_type {};
template <typename... T>
struct is_tuple<std::tuple<T...>> : std::true_type {};
template <typename T>
struct is_pair : std::false_type {};
template <typename A, typename B>
struct is_pair<std::pair<A, B>> : std::true_type {};

// The parameters of a non-overloaded, non-template `forward`.
template <typename F>
struct forward_signature;
template <typename C, typename R, typename... A>
struct forward_signature<R (C::*)(A...)> {
  using args = std::tuple<std::decay_t<A>...>;
  static constexpr size_t arity = sizeof...(A);
};
template <typename C, typename R, typename... A>
struct forward_signature<R (C::*)(A...) const> : forward_signature<R (C::*)(A...)> {};

template <typename Impl, typename = void>
struct has_plain_forward : std::false_type {};
template <typename Impl>
struct has_plain_forward<Impl, std::void_t<decltype(&Impl::forward)>> : std::true_type {};

template <typename Args, size_t... I>
constexpr bool all_tensors(std::index_sequence<I...>) {
  return (std::is_same_v<std::tuple_element_t<I, Args>, torch::Tensor> && ...);
}

/// Output names for a net of `count` outputs: the given ones, else "output" (one) or
/// "output_0", "output_1", ...
TORCHFIT_EXPORT std::string output_name(const std::vector<std::string>& names, size_t i, size_t count);
/// Throws DataError: the net takes `wanted` inputs, the batch has others.
[[noreturn]] TORCHFIT_EXPORT void wrong_input_count(size_t wanted, const Batch& batch);
[[noreturn]] TORCHFIT_EXPORT void wrong_output_names(size_t given, size_t count);

/// Whatever a forward returned, as named outputs.
template <typename R>
Outputs to_outputs(R&& result, const std::vector<std::string>& names) {
  using T = std::decay_t<R>;
  Outputs out;
  if constexpr (std::is_same_v<T, torch::Tensor>) {
    if (names.size() > 1) wrong_output_names(names.size(), 1);
    out.add(output_name(names, 0, 1), std::forward<R>(result), Role::Output);
  } else if constexpr (std::is_same_v<T, Outputs> || std::is_same_v<T, Fields>) {
    out = std::forward<R>(result);
  } else if constexpr (is_tuple<T>::value || is_pair<T>::value) {
    constexpr size_t n = std::tuple_size_v<T>;
    if (!names.empty() && names.size() != n) wrong_output_names(names.size(), n);
    size_t i = 0;
    std::apply([&](auto&&... t) { (out.add(output_name(names, i++, n), torch::Tensor(t), Role::Output), ...); },
               result);
  } else if constexpr (std::is_same_v<T, std::vector<torch::Tensor>>) {
    if (!names.empty() && names.size() != result.size()) wrong_output_names(names.size(), result.size());
    for (size_t i = 0; i < result.size(); ++i) out.add(output_name(names, i, result.size()), result[i], Role::Output);
  } else if constexpr (std::is_same_v<T, std::map<std::string, torch::Tensor>> ||
                       std::is_same_v<T, torch::Dict<std::string, torch::Tensor>>) {
    for (const auto& kv : result) {
      if constexpr (std::is_same_v<T, std::map<std::string, torch::Tensor>>) {
        out.add(kv.first, kv.second, Role::Output);
      } else {
        out.add(kv.key(), kv.value(), Role::Output);
      }
    }
  } else if constexpr (std::is_same_v<T, std::unordered_map<std::string, torch::Tensor>>) {
    // No order of its own: by name, so the columns come out the same every run.
    std::map<std::string, torch::Tensor> sorted(result.begin(), result.end());
    for (const auto& [k, v] : sorted) out.add(k, v, Role::Output);
  } else {
    static_assert(std::is_same_v<T, torch::Tensor>,
                  "torchfit::Net: forward must return a Tensor, a std::tuple or std::vector of Tensors, a "
                  "std::map / std::unordered_map / torch::Dict from names to Tensors, or torchfit::Outputs");
  }
  return out;
}

template <typename Impl, size_t... I>
Outputs call_with_inputs(Impl* net, const Batch& batch, const std::vector<std::string>& names,
                         std::index_sequence<I...>) {
  return to_outputs(net->forward(batch.input(I)...), names);
}

/// Calls `net->forward` with what the batch holds: the whole batch for a forward taking a
/// Batch (or Fields), else the inputs in order, one per Tensor parameter. A templated or
/// overloaded forward (torch::nn::Sequential's) gets the one input.
template <typename Impl>
Outputs call_forward(Impl* net, const Batch& batch, const std::vector<std::string>& names) {
  if constexpr (has_plain_forward<Impl>::value) {
    using Sig = forward_signature<decltype(&Impl::forward)>;
    using Args = typename Sig::args;
    if constexpr (Sig::arity == 1 && (std::is_same_v<std::tuple_element_t<0, Args>, Batch> ||
                                      std::is_same_v<std::tuple_element_t<0, Args>, Fields>)) {
      return to_outputs(net->forward(batch), names);
    } else {
      static_assert(all_tensors<Args>(std::make_index_sequence<Sig::arity>{}),
                    "torchfit::Net: forward's parameters must all be Tensors (one per input, in the batch's order), "
                    "or one const torchfit::Batch&");
      if (batch.count(Role::Input) != Sig::arity) wrong_input_count(Sig::arity, batch);
      return call_with_inputs(net, batch, names, std::make_index_sequence<Sig::arity>{});
    }
  } else {
    if (batch.count(Role::Input) != 1) wrong_input_count(1, batch);
    return to_outputs(net->forward(batch.input()), names);
  }
}

}  // namespace detail

/// Holds a user's module (a TORCH_MODULE holder such as `torch::nn::Linear` or
/// `torch::nn::Sequential`, or a `std::shared_ptr<MyNetImpl>`) behind one interface, so the
/// trainer works with any net. Copies share the same module.
///
/// `forward` may take one Tensor, several (`forward(Tensor image, Tensor side)`: the batch's
/// inputs in order) or the whole batch (`forward(const torchfit::Batch& b)`, reading
/// `b["image"]`), and return one Tensor, a std::tuple or std::vector of them (outputs
/// "output_0", "output_1", ... unless named with output_names()), a map from names to Tensors
/// (std::map, std::unordered_map, torch::Dict) or torchfit::Outputs.
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
      : module_(impl), forward_([raw = impl.get()](const Batch& batch, const std::vector<std::string>& names) {
          return detail::call_forward(raw, batch, names);
        }) {}

  /// The net's outputs for the batch's inputs.
  Outputs forward(const Batch& batch) const { return forward_(batch, output_names_); }
  /// A net of one input and one output: its output for `x`.
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor operator()(const torch::Tensor& x) const { return forward(x); }

  /// Names for the outputs of a net that returns a tuple or vector (`{"cls", "reg"}`): the
  /// names losses and metrics are given for, and the history's columns (train_cls_loss).
  Net& output_names(std::vector<std::string> names) {
    output_names_ = std::move(names);
    return *this;
  }
  const std::vector<std::string>& output_names() const { return output_names_; }

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
  std::function<Outputs(const Batch&, const std::vector<std::string>&)> forward_;
  std::vector<std::string> output_names_;
};

}  // namespace torchfit
