// Rng and the ready-made transforms.
#include "torchfit/transforms.hpp"

#include <cmath>

#include "torchfit/compat.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

namespace {
uint64_t splitmix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void need_dims(const torch::Tensor& t, int64_t dims, const std::string& field, const char* transform) {
  if (!t.defined() || t.dim() < dims) {
    throw DataError(std::string(transform) + " needs field '" + field + "' with at least " + std::to_string(dims) +
                    " dimensions per sample, got " + (t.defined() ? shape_string(t.sizes()) : "none"));
  }
}
}  // namespace

uint64_t Rng::seed_for(uint64_t seed, uint64_t epoch, uint64_t index) {
  return splitmix(splitmix(seed + 0x9E3779B97F4A7C15ULL * (epoch + 1)) ^ (index * 0xD1B54A32D192ED03ULL + 1));
}

uint64_t Rng::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  return splitmix(state_);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int64_t Rng::integer(int64_t low, int64_t high) {
  if (high <= low) return low;
  const auto span = static_cast<uint64_t>(high - low) + 1;
  return low + static_cast<int64_t>(next() % span);
}

torch::Generator& Rng::generator() {
  if (!generator_) generator_ = compat::make_generator(next());
  return *generator_;
}

namespace transforms {

Transform normalize(std::vector<double> mean, std::vector<double> std, std::string field) {
  if (mean.empty() || mean.size() != std.size()) {
    throw ConfigError("normalize needs as many means as standard deviations (one, or one per channel); got " +
                      std::to_string(mean.size()) + " and " + std::to_string(std.size()));
  }
  for (double s : std) {
    if (!(s > 0) || !std::isfinite(s)) throw ConfigError("normalize: a standard deviation must be positive, got " + std::to_string(s));
  }
  for (double m : mean) {
    if (!std::isfinite(m)) throw ConfigError("normalize: a mean must be a finite number, got " + std::to_string(m));
  }
  auto m = torch::tensor(mean, torch::kFloat);
  auto s = torch::tensor(std, torch::kFloat);
  return [m, s, field](Sample& sample, Rng&) {
    auto& x = sample[field];
    auto xf = x.to(torch::kFloat);
    if (m.numel() == 1) {
      x = (xf - m[0]) / s[0];
      return;
    }
    if (xf.dim() < 1 || xf.size(0) != m.numel()) {
      throw DataError("normalize has " + std::to_string(m.numel()) + " channel means but field '" + field +
                      "' has shape " + shape_string(xf.sizes()) + " (channels first)");
    }
    std::vector<int64_t> shape(static_cast<size_t>(xf.dim()), 1);
    shape[0] = m.numel();
    x = (xf - m.view(shape)) / s.view(shape);
  };
}

Transform random_horizontal_flip(double p, std::string field) {
  if (!(p >= 0 && p <= 1)) throw ConfigError("random_horizontal_flip: the probability must be in [0, 1], got " + std::to_string(p));
  return [p, field](Sample& sample, Rng& rng) {
    auto& x = sample[field];
    need_dims(x, 1, field, "random_horizontal_flip");
    if (rng.chance(p)) x = x.flip({-1});
  };
}

Transform random_crop(int64_t padding, std::string field) {
  if (padding < 0) throw ConfigError("random_crop: the padding must be 0 or more, got " + std::to_string(padding));
  return [padding, field](Sample& sample, Rng& rng) {
    auto& x = sample[field];
    need_dims(x, 2, field, "random_crop");
    const int64_t dy = rng.integer(0, 2 * padding), dx = rng.integer(0, 2 * padding);
    if (padding == 0) return;
    const int64_t h = x.size(-2), w = x.size(-1);
    auto padded = torch::constant_pad_nd(x, {padding, padding, padding, padding}, 0);
    x = padded.narrow(-2, dy, h).narrow(-1, dx, w).contiguous();
  };
}

Transform gaussian_noise(double std, std::string field) {
  if (!(std >= 0) || !std::isfinite(std)) throw ConfigError("gaussian_noise: the standard deviation must be 0 or more, got " + std::to_string(std));
  return [std, field](Sample& sample, Rng& rng) {
    auto& x = sample[field];
    auto xf = x.to(torch::kFloat);
    x = xf + std * torch::randn(xf.sizes(), rng.generator(), torch::TensorOptions().dtype(torch::kFloat));
  };
}

Transform to_float(double scale, std::string field) {
  if (!(scale > 0) || !std::isfinite(scale)) throw ConfigError("to_float: the scale must be positive, got " + std::to_string(scale));
  return [scale, field](Sample& sample, Rng&) {
    auto& x = sample[field];
    x = x.to(torch::kFloat).mul(scale);
  };
}

Transform random_erasing(double p, std::string field) {
  if (!(p >= 0 && p <= 1)) throw ConfigError("random_erasing: the probability must be in [0, 1], got " + std::to_string(p));
  return [p, field](Sample& sample, Rng& rng) {
    auto& x = sample[field];
    need_dims(x, 2, field, "random_erasing");
    if (!rng.chance(p)) return;
    const int64_t h = x.size(-2), w = x.size(-1);
    const double area = static_cast<double>(h * w);
    // torchvision's RandomErasing: 2% to 33% of the area, aspect ratio 0.3 to 3.3 (log-uniform);
    // up to ten tries for a rectangle that fits.
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * (0.02 + rng.uniform() * (0.33 - 0.02));
      const double ratio = std::exp(std::log(0.3) + rng.uniform() * (std::log(1 / 0.3) - std::log(0.3)));
      const auto eh = static_cast<int64_t>(std::lround(std::sqrt(target * ratio)));
      const auto ew = static_cast<int64_t>(std::lround(std::sqrt(target / ratio)));
      if (eh < 1 || ew < 1 || eh >= h || ew >= w) continue;
      const int64_t top = rng.integer(0, h - eh), left = rng.integer(0, w - ew);
      auto erased = x.clone();
      erased.narrow(-2, top, eh).narrow(-1, left, ew).zero_();
      x = erased;
      return;
    }
  };
}

}  // namespace transforms

}  // namespace torchfit
