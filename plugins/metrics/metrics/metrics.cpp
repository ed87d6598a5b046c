// The standard metrics: acc, accuracy, auc, precision, recall, f1, mae, mse, rmse, r2.
#include <torchfit/plugin.hpp>

#include <cmath>
#include <limits>

#include <torchfit/errors.hpp>
#include <torchfit/loss.hpp>

namespace {

namespace po = boost::program_options;
using torch::Tensor;
using torchfit::DataError;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void require_same_shape(const char* metric, const Tensor& preds, const Tensor& targets) {
  if (!targets.defined()) {
    throw DataError(std::string("metric '") + metric + "' needs targets, but the batch has none");
  }
  if (preds.sizes() != targets.sizes()) {
    throw DataError(std::string("metric '") + metric + "': predictions have shape " +
                    torchfit::shape_string(preds.sizes()) + " but targets have shape " +
                    torchfit::shape_string(targets.sizes()) + "; this metric needs them equal");
  }
}

Tensor zeros_like_scalar(const Tensor& like) { return torch::zeros({}, like.options().dtype(torch::kDouble)); }

double ratio(const Tensor& numerator, double denominator) {
  return denominator > 0 ? numerator.item<double>() / denominator : kNaN;
}

// Binary classification from logits: positive when sigmoid(logit) >= threshold.
class BinaryCounts : public torchfit::Metric {
 public:
  BinaryCounts(const char* name, double threshold)
      : name_(name), logit_threshold_(std::log(threshold / (1.0 - threshold))) {}
  void update(const Tensor& preds, const Tensor& targets) override {
    require_same_shape(name_, preds, targets);
    const auto predicted = preds >= logit_threshold_;
    const auto actual = targets >= 0.5;
    if (!tp_.defined()) {
      tp_ = zeros_like_scalar(preds), fp_ = zeros_like_scalar(preds), fn_ = zeros_like_scalar(preds), correct_ = zeros_like_scalar(preds);
    }
    tp_.add_((predicted & actual).sum());
    fp_.add_((predicted & ~actual).sum());
    fn_.add_((~predicted & actual).sum());
    correct_.add_((predicted == actual).sum());
    count_ += targets.numel();
  }
  void reset() override {
    tp_ = fp_ = fn_ = correct_ = Tensor();
    count_ = 0;
  }
  bool higher_is_better() const override { return true; }

 protected:
  const char* name_;
  double logit_threshold_;
  Tensor tp_, fp_, fn_, correct_;
  int64_t count_ = 0;
};

class BinaryAccuracy final : public BinaryCounts {
 public:
  using BinaryCounts::BinaryCounts;
  double compute() override { return count_ ? correct_.item<double>() / static_cast<double>(count_) : kNaN; }
};

class Precision final : public BinaryCounts {
 public:
  using BinaryCounts::BinaryCounts;
  double compute() override {
    if (!count_) return kNaN;
    const double tp = tp_.item<double>(), fp = fp_.item<double>();
    return tp + fp > 0 ? tp / (tp + fp) : 0.0;
  }
};

class Recall final : public BinaryCounts {
 public:
  using BinaryCounts::BinaryCounts;
  double compute() override {
    if (!count_) return kNaN;
    const double tp = tp_.item<double>(), fn = fn_.item<double>();
    return tp + fn > 0 ? tp / (tp + fn) : 0.0;
  }
};

class F1 final : public BinaryCounts {
 public:
  using BinaryCounts::BinaryCounts;
  double compute() override {
    if (!count_) return kNaN;
    const double tp = tp_.item<double>(), fp = fp_.item<double>(), fn = fn_.item<double>();
    return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
  }
};

// Multi-class accuracy: argmax of [N, C] scores against [N] class indices.
class MulticlassAccuracy final : public torchfit::Metric {
 public:
  void update(const Tensor& preds, const Tensor& targets) override {
    if (!targets.defined() || preds.dim() != 2 || targets.dim() != 1 || preds.size(0) != targets.size(0)) {
      throw DataError("metric 'accuracy': needs predictions [N, C] and class-index targets [N], got " +
                      torchfit::shape_string(preds.sizes()) + " and " +
                      (targets.defined() ? torchfit::shape_string(targets.sizes()) : std::string("none")) +
                      " (for one logit per sample use 'acc')");
    }
    if (!correct_.defined()) correct_ = zeros_like_scalar(preds);
    correct_.add_((preds.argmax(1) == targets.to(torch::kLong)).sum());
    count_ += targets.numel();
  }
  double compute() override { return ratio(correct_, static_cast<double>(count_)); }
  void reset() override {
    correct_ = Tensor();
    count_ = 0;
  }
  bool higher_is_better() const override { return true; }

 private:
  Tensor correct_;
  int64_t count_ = 0;
};

// Regression errors, exact over the epoch: sums of |e| and e^2 over every element.
class Errors final : public torchfit::Metric {
 public:
  enum class Kind { Mae, Mse, Rmse };
  Errors(const char* name, Kind kind) : name_(name), kind_(kind) {}
  void update(const Tensor& preds, const Tensor& targets) override {
    require_same_shape(name_, preds, targets);
    if (!sum_.defined()) sum_ = zeros_like_scalar(preds);
    const auto diff = preds.to(torch::kDouble) - targets.to(torch::kDouble);
    sum_.add_(kind_ == Kind::Mae ? diff.abs().sum() : diff.square().sum());
    count_ += targets.numel();
  }
  double compute() override {
    const double mean = ratio(sum_, static_cast<double>(count_));
    return kind_ == Kind::Rmse ? std::sqrt(mean) : mean;
  }
  void reset() override {
    sum_ = Tensor();
    count_ = 0;
  }
  bool higher_is_better() const override { return false; }

 private:
  const char* name_;
  Kind kind_;
  Tensor sum_;
  int64_t count_ = 0;
};

// Coefficient of determination: 1 - SS_res / SS_tot over every element of the epoch.
class R2 final : public torchfit::Metric {
 public:
  void update(const Tensor& preds, const Tensor& targets) override {
    require_same_shape("r2", preds, targets);
    const auto p = preds.to(torch::kDouble), t = targets.to(torch::kDouble);
    if (!sums_.defined()) sums_ = torch::zeros({3}, p.options());
    sums_.add_(torch::stack({t.sum(), t.square().sum(), (t - p).square().sum()}));
    count_ += targets.numel();
  }
  double compute() override {
    if (count_ < 2) return kNaN;
    const auto s = sums_.cpu();
    const double sum = s[0].item<double>(), sum_sq = s[1].item<double>(), ss_res = s[2].item<double>();
    const double ss_tot = sum_sq - sum * sum / static_cast<double>(count_);
    return ss_tot > 0 ? 1.0 - ss_res / ss_tot : kNaN;
  }
  void reset() override {
    sums_ = Tensor();
    count_ = 0;
  }
  bool higher_is_better() const override { return true; }

 private:
  Tensor sums_;
  int64_t count_ = 0;
};

// Exact ROC AUC over the epoch (Mann-Whitney U with averaged ranks for ties): keeps every
// score, so memory grows with the epoch's size.
class Auc final : public torchfit::Metric {
 public:
  void update(const Tensor& preds, const Tensor& targets) override {
    require_same_shape("auc", preds, targets);
    scores_.push_back(preds.reshape({-1}));
    labels_.push_back(targets.reshape({-1}));
  }
  double compute() override {
    if (scores_.empty()) return kNaN;
    const auto scores = torch::cat(scores_).to(torch::kCPU, torch::kDouble);
    const auto labels = torch::cat(labels_).to(torch::kCPU, torch::kDouble);
    const auto order = scores.argsort();
    const auto s = scores.index_select(0, order).contiguous();
    const auto l = labels.index_select(0, order).contiguous();
    const double* sp = s.data_ptr<double>();
    const double* lp = l.data_ptr<double>();
    const int64_t n = s.numel();
    double positives = 0, rank_sum = 0;
    for (int64_t i = 0; i < n;) {
      int64_t j = i;
      while (j < n && sp[j] == sp[i]) ++j;
      const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
      for (int64_t k = i; k < j; ++k) {
        if (lp[k] >= 0.5) {
          positives += 1;
          rank_sum += average_rank;
        }
      }
      i = j;
    }
    const double negatives = static_cast<double>(n) - positives;
    if (positives == 0 || negatives == 0) return kNaN;
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives);
  }
  void reset() override {
    scores_.clear();
    labels_.clear();
  }
  bool higher_is_better() const override { return true; }

 private:
  std::vector<Tensor> scores_, labels_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Metric, "metrics", "1.0.0",
                            "Standard metrics: acc, accuracy, auc, precision, recall, f1, mae, mse, rmse, r2");
  info.provides = {"acc", "accuracy", "auc", "precision", "recall", "f1", "mae", "mse", "rmse", "r2"};
  info.options->add_options()  //
      ("threshold", po::value<double>()->default_value(0.5),
       "probability at or above which a binary prediction (a logit through a sigmoid) counts as positive; "
       "used by acc, precision, recall and f1");
  return info;
}

std::shared_ptr<torchfit::Metric> create(const std::string& name, const torchfit::PluginOptions& options) {
  const double threshold = options.count("threshold") ? options["threshold"].as<double>() : 0.5;
  if (!(threshold > 0 && threshold < 1)) {
    throw torchfit::ConfigError("metrics.threshold must be between 0 and 1 (exclusive), got " +
                                std::to_string(threshold));
  }
  if (name == "acc") return std::make_shared<BinaryAccuracy>("acc", threshold);
  if (name == "precision") return std::make_shared<Precision>("precision", threshold);
  if (name == "recall") return std::make_shared<Recall>("recall", threshold);
  if (name == "f1") return std::make_shared<F1>("f1", threshold);
  if (name == "accuracy") return std::make_shared<MulticlassAccuracy>();
  if (name == "auc") return std::make_shared<Auc>();
  if (name == "mae") return std::make_shared<Errors>("mae", Errors::Kind::Mae);
  if (name == "mse") return std::make_shared<Errors>("mse", Errors::Kind::Mse);
  if (name == "rmse") return std::make_shared<Errors>("rmse", Errors::Kind::Rmse);
  if (name == "r2") return std::make_shared<R2>();
  return nullptr;
}

}  // namespace

TORCHFIT_METRIC_PLUGIN(describe, create)
