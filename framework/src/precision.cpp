// Mixed precision: autocast guards and dynamic loss scaling.
#include "torchfit/precision.hpp"

#include <ATen/autocast_mode.h>

#include "torchfit/errors.hpp"
#include "torchfit/registry.hpp"

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

// LibTorch 1.13 and 2.x up to 2.3 have these per-device-type functions (2.4 adds
// device-generic ones and keeps these, deprecated).
AutocastGuard::AutocastGuard(Precision precision, torch::Device device) {
  if (precision == Precision::Float32) return;
  cuda_ = device.is_cuda();
  if (!cuda_ && precision == Precision::FP16Mixed) {
    throw ConfigError("16-mixed precision needs a CUDA device (LibTorch's CPU autocast has no float16); on a CPU "
                      "use bf16-mixed");
  }
  const auto dtype = precision == Precision::BF16Mixed ? at::kBFloat16 : at::kHalf;
  active_ = true;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Leaving the outermost autocast region drops its cache of casted weights, as
  // torch.autocast's __exit__ does.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
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
  torch::Tensor bad;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    auto g = p.grad();
    g.mul_(inverse);
    const auto b = g.isfinite().logical_not().any();
    bad = bad.defined() ? bad.logical_or(b.to(bad.device())) : b;
  }
  return !(bad.defined() && bad.item<bool>());
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
