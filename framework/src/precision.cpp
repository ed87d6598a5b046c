// Mixed precision: autocast guards and dynamic loss scaling.
#include "torchfit/precision.hpp"

#include <ATen/autocast_mode.h>

#include <algorithm>

#include "torchfit/compat.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

Precision parse_precision(const std::string& text, const std::string& option) {
  if (text == "32" || text == "32-true") return Precision::Float32;
  if (text == "bf16-mixed") return Precision::BF16Mixed;
  if (text == "16-mixed") return Precision::FP16Mixed;
  const std::vector<std::string> names = {"32", "bf16-mixed", "16-mixed"};
  auto guess = closest_name(text, names);
  for (const auto& name : names) {
    if (guess.empty() && !text.empty() && name.rfind(text, 0) == 0) guess = name;  // "bf16" for "bf16-mixed"
  }
  throw ConfigError(option + " must be 32, bf16-mixed or 16-mixed, got '" + text + "'" +
                    (guess.empty() ? "" : "; did you mean '" + guess + "'?"));
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::Float32:
      return "32";
    case Precision::BF16Mixed:
      return "bf16-mixed";
    case Precision::FP16Mixed:
      return "16-mixed";
  }
  return "?";
}

namespace {

// LibTorch 2.4 made autocast's state per device type (at::autocast::set_autocast_enabled(type, on))
// and deprecated the per-device functions that 1.13 has; each build uses its own.
bool autocast_enabled(bool cuda) {
#if TORCHFIT_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(bool cuda, bool enabled) {
#if TORCHFIT_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, enabled);
#else
  cuda ? at::autocast::set_enabled(enabled) : at::autocast::set_cpu_enabled(enabled);
#endif
}

at::ScalarType autocast_dtype(bool cuda) {
#if TORCHFIT_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(bool cuda, at::ScalarType dtype) {
#if TORCHFIT_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, dtype);
#else
  cuda ? at::autocast::set_autocast_gpu_dtype(dtype) : at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace

AutocastGuard::AutocastGuard(Precision precision, torch::Device device) {
  if (precision == Precision::Float32) return;
  cuda_ = device.is_cuda();
  if (!cuda_ && precision == Precision::FP16Mixed) {
    throw ConfigError("16-mixed precision needs a CUDA device (LibTorch's CPU autocast has no float16); on a CPU "
                      "use bf16-mixed");
  }
  active_ = true;
  was_enabled_ = autocast_enabled(cuda_);
  was_dtype_ = autocast_dtype(cuda_);
  set_autocast_dtype(cuda_, precision == Precision::BF16Mixed ? at::kBFloat16 : at::kHalf);
  set_autocast_enabled(cuda_, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Leaving the outermost autocast region drops its cache of casted weights, as
  // torch.autocast's __exit__ does.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(cuda_, was_enabled_);
  set_autocast_dtype(cuda_, was_dtype_);
}

GradScaler::GradScaler(Options options) : options_(options), scale_(options.init_scale) {
  if (!(options_.init_scale > 0) || !(options_.growth_factor > 1) || !(options_.backoff_factor > 0 &&
      options_.backoff_factor < 1) || options_.growth_interval < 1) {
    throw ConfigError("GradScaler needs init_scale > 0, growth_factor > 1, backoff_factor in (0, 1) and "
                      "growth_interval >= 1");
  }
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const { return loss * scale_; }

bool GradScaler::unscale(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  const double inverse = 1.0 / scale_;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return true;
  const auto device = grads.front().device();
  const bool fused = device.is_cuda() && std::all_of(grads.begin(), grads.end(), [&](const torch::Tensor& g) {
    return g.device() == device && g.scalar_type() == torch::kFloat;
  });
  if (fused) {
    // One kernel for every gradient, as torch.amp.GradScaler does on a GPU (it has no CPU
    // kernel in LibTorch 1.13). The scale is a power of two, so its inverse is exact in float32.
    auto found_inf = torch::zeros({1}, grads.front().options());
    const auto inv_scale = torch::full({1}, inverse, grads.front().options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
    return found_inf.item<float>() == 0.0f;
  }
  torch::Tensor bad;
  for (auto& g : grads) {
    g.mul_(inverse);
    const auto b = g.isfinite().logical_not().any();
    bad = bad.defined() ? bad.logical_or(b.to(bad.device())) : b;
  }
  return !bad.item<bool>();
}

void GradScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    good_steps_ = 0;
    ++skipped_;
    return;
  }
  if (++good_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    good_steps_ = 0;
  }
}

void GradScaler::set_state(double scale, int64_t good_steps, int64_t skipped) {
  scale_ = scale;
  good_steps_ = good_steps;
  skipped_ = skipped;
}

}  // namespace torchfit
