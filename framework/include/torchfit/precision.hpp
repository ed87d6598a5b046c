// Mixed precision: autocast for the forward pass, and dynamic loss scaling for float16.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// Lightning's names: "32" (or "32-true"), "bf16-mixed", "16-mixed".
enum class Precision {
  Float32,    ///< everything in float32
  BF16Mixed,  ///< forward and loss under autocast to bfloat16 (CPU and CUDA); weights stay float32
  FP16Mixed,  ///< forward and loss under autocast to float16 (CUDA only), with loss scaling
};

/// Throws ConfigError naming `option` for anything else.
TORCHFIT_EXPORT Precision parse_precision(const std::string& text, const std::string& option = "--precision");
TORCHFIT_EXPORT const char* precision_name(Precision precision);

/// Autocast on `device` for its lifetime (nothing for Float32); restores the previous state.
/// Throws ConfigError for float16 on a CPU, where LibTorch's autocast has no float16.
class TORCHFIT_EXPORT AutocastGuard {
 public:
  AutocastGuard(Precision precision, torch::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

/// Dynamic loss scaling, like torch.cuda.amp.GradScaler: the loss is multiplied by a power of
/// two before backward so small float16 gradients do not flush to zero; before the step the
/// gradients are divided back (exactly: powers of two) and checked. A step with an inf or NaN
/// gradient is skipped and the scale halved; after `growth_interval` good steps it doubles.
class TORCHFIT_EXPORT GradScaler {
 public:
  struct Options {
    double init_scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };
  GradScaler() : GradScaler(Options{}) {}
  explicit GradScaler(Options options);

  /// `loss` times the current scale.
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// Divides every defined gradient of `params` by the scale, in place. Returns false when
  /// any of them holds an inf or NaN (one host sync).
  bool unscale(const std::vector<torch::Tensor>& params);
  /// After a step (found_inf: it was skipped): back off, or count towards growth.
  void update(bool found_inf);

  double scale_value() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  int64_t skipped_steps() const { return skipped_; }
  /// For state files: the scale, the good-step count and the skipped-step count.
  void set_state(double scale, int64_t good_steps, int64_t skipped);

 private:
  Options options_;
  double scale_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace torchfit
