// The standard metrics: acc, accuracy, top_k_accuracy, macro_f1, confusion_matrix, auc, precision,
// recall, f1, mae, mse, rmse, r2.
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include <torchfit/errors.hpp>
#include <torchfit/loss.hpp>
#include <torchfit/text.hpp>

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

// Scores [N, C] against class indices [N].
void require_class_scores(const char* metric, const Tensor& preds, const Tensor& targets) {
  if (!targets.defined() || preds.dim() != 2 || targets.dim() != 1 || preds.size(0) != targets.size(0)) {
    throw DataError(std::string("metric '") + metric + "': needs predictions [N, C] and class-index targets [N], got " +
                    torchfit::shape_string(preds.sizes()) + " and " +
                    (targets.defined() ? torchfit::shape_string(targets.sizes()) : std::string("none")) +
                    " (for one logit per sample use 'acc')");
  }
}

// Rows of consecutive batches, copied one after another into a buffer that is allocated once
// and kept across epochs. Holding each batch's own small tensors until the group is reduced
// instead scattered them through the heap between the large per-batch tensors, and the
// allocator kept returning pages to the system and faulting them in again (10-30x the page
// faults of a hand-written loop on the 784-512-256-10 MLP benchmark).
class RowBuffer {
 public:
  /// Whether `t` ([n, ...]) fits behind the rows held: same dtype, device and row shape, room left.
  bool fits(const Tensor& t) const {
    return buffer_.defined() && t.scalar_type() == buffer_.scalar_type() && t.device() == buffer_.device() &&
           t.sizes().slice(1) == buffer_.sizes().slice(1) && rows_ + t.size(0) <= buffer_.size(0);
  }
  /// Appends `t`; when it does not fit, the buffer must be empty: it is reallocated for
  /// `capacity` rows shaped like `t`'s.
  void append(const Tensor& t, int64_t capacity) {
    if (!fits(t)) {
      TORCH_INTERNAL_ASSERT(rows_ == 0, "RowBuffer: reallocating would drop the rows held");
      auto sizes = t.sizes().vec();
      sizes[0] = std::max(capacity, t.size(0));
      buffer_ = torch::empty(sizes, t.options().requires_grad(false));
      rows_ = 0;
    }
    const int64_t n = t.size(0);
    if (n == 0) return;
    if (t.device().is_cpu() && t.is_contiguous()) {
      // A plain memcpy: copy_ through the dispatcher costs ~8,000 instructions a call, which
      // the ring benchmark's tiny batches notice (+1.8% instructions for fit()).
      const auto row_bytes = static_cast<size_t>(buffer_.stride(0)) * buffer_.element_size();
      std::memcpy(static_cast<char*>(buffer_.data_ptr()) + static_cast<size_t>(rows_) * row_bytes, t.data_ptr(),
                  static_cast<size_t>(n) * row_bytes);
    } else {
      torch::NoGradGuard no_grad;
      buffer_.narrow(0, rows_, n).copy_(t);
    }
    rows_ += n;
  }
  Tensor rows() const { return buffer_.narrow(0, 0, rows_); }
  int64_t size() const { return rows_; }
  int64_t capacity() const { return buffer_.defined() ? buffer_.size(0) : 0; }
  void clear() { rows_ = 0; }

 private:
  Tensor buffer_;
  int64_t rows_ = 0;
};

// Keeps a few batches and reduces them together: one set of kernels for up to kMaxBatches
// batches instead of one per batch. Small batches cost far more in per-operation dispatch
// than in arithmetic, so this is what keeps a metric cheap; the sums are the same, exact.
class Batched : public torchfit::Metric {
 public:
  void update(const Tensor& preds, const Tensor& targets) final {
    check(preds, targets);
    const auto p = as_rows(preds), t = as_rows(targets);
    append(p, t, capacity_for(p, t));
    count_ += targets.numel();
  }
  double compute() final {
    flush();
    return count_ ? value() : kNaN;
  }
  void reset() final {
    preds_.clear();
    targets_.clear();
    batches_ = 0;
    count_ = 0;
    clear();
  }
  // The rows not yet reduced are saved as they are, with the group's capacity and batch count:
  // a resumed epoch reduces exactly the same groups as one never interrupted, so even float
  // sums come out bit for bit the same.
  bool state_dict(torch::serialize::OutputArchive& archive) const final {
    archive.write("count", c10::IValue(count_));
    archive.write("pending", c10::IValue(int64_t{preds_.size() > 0}));
    if (preds_.size() > 0) {
      archive.write("p0", preds_.rows().clone());
      archive.write("t0", targets_.rows().clone());
      archive.write("capacity", c10::IValue(preds_.capacity()));
      archive.write("batches", c10::IValue(static_cast<int64_t>(batches_)));
    }
    save(archive);
    return true;
  }
  // Data-parallel: the counts summed, then each metric's own reduction of its state.
  bool sync(torchfit::Communicator& comm) final {
    flush();
    auto count = torch::full({1}, count_, torch::kLong);
    comm.all_reduce_sum(count);
    count_ = count.item<int64_t>();
    merge(comm);
    return true;
  }
  // Also reads the states of torchfit 0.1 before the row buffer: one entry per pending batch.
  void load_state_dict(torch::serialize::InputArchive& archive) final {
    reset();
    c10::IValue v;
    archive.read("count", v);
    count_ = v.toInt();
    archive.read("pending", v);
    const int64_t pending = v.toInt();
    c10::IValue capacity, batches;
    const bool sized = pending > 0 && archive.try_read("capacity", capacity) && archive.try_read("batches", batches);
    for (int64_t i = 0; i < pending; ++i) {
      Tensor p, t;
      archive.read("p" + std::to_string(i), p);
      archive.read("t" + std::to_string(i), t);
      p = as_rows(p);
      t = as_rows(t);
      const int64_t rows = p.size(0), room = sized ? capacity.toInt() : capacity_for(p, t);
      if (t.size(0) != rows || room < rows || room > std::max(rows, kMaxValues)) {
        throw DataError("the metric's saved rows are inconsistent (" + std::to_string(rows) + " predictions, " +
                        std::to_string(t.size(0)) + " targets, room for " + std::to_string(room) + ")");
      }
      append(p, t, room);
    }
    if (sized) batches_ = static_cast<size_t>(batches.toInt());
    load(archive);
  }

 protected:
  virtual void save(torch::serialize::OutputArchive& archive) const {}
  virtual void load(torch::serialize::InputArchive& archive) {}
  /// Replaces this process's reduced state with the sum (or union) over every process.
  virtual void merge(torchfit::Communicator& comm) = 0;
  virtual void check(const Tensor& preds, const Tensor& targets) const = 0;
  /// Adds the pending batches, concatenated (views of the row buffers: not to be kept).
  virtual void accumulate(const Tensor& preds, const Tensor& targets) = 0;
  virtual double value() = 0;
  virtual void clear() = 0;
  int64_t count_ = 0;  ///< target elements seen since the reset

 private:
  static constexpr size_t kMaxBatches = 64;
  static constexpr int64_t kMaxValues = int64_t{1} << 22;  // 16 MiB of float32 held at most

  static Tensor as_rows(const Tensor& t) { return t.dim() == 0 ? t.reshape({1}) : t; }
  // Rows for kMaxBatches batches like this one, as far as kMaxValues allows (at least one batch).
  static int64_t capacity_for(const Tensor& preds, const Tensor& targets) {
    const int64_t n = std::max<int64_t>(preds.size(0), 1);
    const int64_t per_row = std::max<int64_t>((preds.numel() + targets.numel()) / n, 1);
    return std::max(n, std::min(n * static_cast<int64_t>(kMaxBatches), kMaxValues / per_row));
  }
  void append(const Tensor& preds, const Tensor& targets, int64_t capacity) {
    if (!preds_.fits(preds) || !targets_.fits(targets)) flush();
    preds_.append(preds, capacity);
    targets_.append(targets, capacity);
    if (++batches_ >= kMaxBatches) flush();
  }
  void flush() {
    if (preds_.size() == 0) return;
    accumulate(preds_.rows(), targets_.rows());
    preds_.clear();
    targets_.clear();
    batches_ = 0;
  }

  RowBuffer preds_, targets_;
  size_t batches_ = 0;
};

// Sums kept on the device in one small double tensor, read back once in compute().
class Sums : public Batched {
 protected:
  void add(const std::vector<Tensor>& values) {
    auto stacked = torch::stack(values).to(torch::kDouble);
    sums_ = sums_.defined() ? sums_ + stacked : stacked;
  }
  // Summed across processes. A process that saw no batch has no sums yet: its width comes
  // from the others (the widest), and it takes part with zeros.
  void merge(torchfit::Communicator& comm) override {
    auto width = comm.all_gather_rows(torch::full({1}, sums_.defined() ? sums_.numel() : 0, torch::kLong));
    const int64_t n = width.max().item<int64_t>();
    if (n == 0) return;
    if (!sums_.defined()) sums_ = torch::zeros({n}, torch::kDouble);
    auto cpu = sums_.to(torch::kCPU).contiguous();
    comm.all_reduce_sum(cpu);
    sums_ = cpu.to(sums_.device());
  }
  std::vector<double> sums() const {
    auto s = sums_.to(torch::kCPU).contiguous();
    return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  }
  void clear() override { sums_ = Tensor(); }
  void save(torch::serialize::OutputArchive& archive) const override {
    if (sums_.defined()) archive.write("sums", sums_);
  }
  void load(torch::serialize::InputArchive& archive) override {
    Tensor sums;
    if (archive.try_read("sums", sums)) sums_ = sums;
  }

 private:
  Tensor sums_;
};

// Binary classification from logits: positive when sigmoid(logit) >= threshold.
class Binary : public Sums {
 public:
  Binary(const char* name, double threshold) : name_(name), logit_threshold_(std::log(threshold / (1.0 - threshold))) {}
  bool higher_is_better() const override { return true; }

 protected:
  void check(const Tensor& preds, const Tensor& targets) const override { require_same_shape(name_, preds, targets); }
  Tensor predicted(const Tensor& preds) const { return preds >= logit_threshold_; }
  const char* name_;

 private:
  double logit_threshold_;
};

class BinaryAccuracy final : public Binary {
 public:
  using Binary::Binary;

 protected:
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    add({(predicted(preds) == (targets >= 0.5)).sum()});
  }
  double value() override { return sums()[0] / static_cast<double>(count_); }
};

// Precision, recall and F1 from true positives, false positives and false negatives.
class BinaryRates final : public Binary {
 public:
  enum class Kind { Precision, Recall, F1 };
  BinaryRates(const char* name, double threshold, Kind kind) : Binary(name, threshold), kind_(kind) {}

 protected:
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    const auto p = predicted(preds), a = targets >= 0.5;
    add({(p & a).sum(), (p & ~a).sum(), (~p & a).sum()});
  }
  double value() override {
    const auto s = sums();
    const double tp = s[0], fp = s[1], fn = s[2];
    switch (kind_) {
      case Kind::Precision:
        return tp + fp > 0 ? tp / (tp + fp) : 0.0;
      case Kind::Recall:
        return tp + fn > 0 ? tp / (tp + fn) : 0.0;
      case Kind::F1:
        return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
    }
    return kNaN;
  }

 private:
  Kind kind_;
};

// Multi-class accuracy: argmax of [N, C] scores against [N] class indices.
class MulticlassAccuracy final : public Sums {
 public:
  bool higher_is_better() const override { return true; }

 protected:
  void check(const Tensor& preds, const Tensor& targets) const override {
    require_class_scores("accuracy", preds, targets);
  }
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    add({(preds.argmax(1) == targets.to(torch::kLong)).sum()});
  }
  double value() override { return sums()[0] / static_cast<double>(count_); }
};

// Top-k accuracy: the true class among the k highest scores (every sample when k >= C).
class TopKAccuracy final : public Sums {
 public:
  explicit TopKAccuracy(int64_t k) : k_(k) {}
  bool higher_is_better() const override { return true; }

 protected:
  void check(const Tensor& preds, const Tensor& targets) const override {
    require_class_scores("top_k_accuracy", preds, targets);
  }
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    const auto top = std::get<1>(preds.topk(std::min(k_, preds.size(1)), 1));
    add({(top == targets.to(torch::kLong).unsqueeze(1)).any(1).sum()});
  }
  double value() override { return sums()[0] / static_cast<double>(count_); }

 private:
  int64_t k_;
};

// The epoch's confusion matrix, K*K counts summed like any other sums (exact, data-parallel
// included): confusion_matrix's value is its accuracy, macro_f1's the mean of the classes' F1.
class ConfusionCounts final : public Sums {
 public:
  enum class Kind { Accuracy, MacroF1 };
  ConfusionCounts(const char* name, Kind kind) : name_(name), kind_(kind) {}
  bool higher_is_better() const override { return true; }
  Tensor matrix() {
    compute();  // folds in the rows not yet reduced
    return counts();
  }

 protected:
  Tensor counts() const {
    if (count_ == 0) return torch::zeros({0, 0}, torch::kLong);
    const auto s = sums();
    const auto k = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(s.size()))));
    return torch::tensor(s, torch::kDouble).round().to(torch::kLong).reshape({k, k});
  }
  void check(const Tensor& preds, const Tensor& targets) const override { require_class_scores(name_, preds, targets); }
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    const int64_t k = preds.size(1);
    const auto t = targets.to(torch::kLong);
    // One host sync per group of batches: a label outside [0, K) would land in another cell.
    if (t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= k)) {
      throw DataError(std::string("metric '") + name_ + "': a class index is outside 0.." + std::to_string(k - 1) +
                      " (the net gives " + std::to_string(k) + " scores per sample)");
    }
    add({torch::bincount(t * k + preds.argmax(1), {}, k * k)});
  }
  double value() override {
    const auto m = counts();
    if (kind_ == Kind::MacroF1) return torchfit::ClassReport(m).macro_f1;
    return m.trace().item<double>() / static_cast<double>(count_);
  }

 private:
  const char* name_;
  Kind kind_;
};

// confusion_matrix and macro_f1 as the framework's ConfusionMetric (what `torchfit evaluate`
// prints the per-class table from), over the counts above.
class Confusion final : public torchfit::ConfusionMetric {
 public:
  Confusion(const char* name, ConfusionCounts::Kind kind) : counts_(name, kind) {}
  void update(const Tensor& preds, const Tensor& targets) override { counts_.update(preds, targets); }
  double compute() override { return counts_.compute(); }
  void reset() override { counts_.reset(); }
  bool higher_is_better() const override { return true; }
  bool state_dict(torch::serialize::OutputArchive& archive) const override { return counts_.state_dict(archive); }
  void load_state_dict(torch::serialize::InputArchive& archive) override { counts_.load_state_dict(archive); }
  bool sync(torchfit::Communicator& comm) override { return counts_.sync(comm); }
  Tensor confusion_matrix() override { return counts_.matrix(); }

 private:
  ConfusionCounts counts_;
};

// Regression errors, exact over the epoch: sums of |e| and e^2 over every element.
class Errors final : public Sums {
 public:
  enum class Kind { Mae, Mse, Rmse };
  Errors(const char* name, Kind kind) : name_(name), kind_(kind) {}
  bool higher_is_better() const override { return false; }

 protected:
  void check(const Tensor& preds, const Tensor& targets) const override { require_same_shape(name_, preds, targets); }
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    const auto diff = preds.to(torch::kDouble) - targets.to(torch::kDouble);
    add({kind_ == Kind::Mae ? diff.abs().sum() : diff.square().sum()});
  }
  double value() override {
    const double mean = sums()[0] / static_cast<double>(count_);
    return kind_ == Kind::Rmse ? std::sqrt(mean) : mean;
  }

 private:
  const char* name_;
  Kind kind_;
};

// Coefficient of determination: 1 - SS_res / SS_tot over every element of the epoch.
class R2 final : public Sums {
 public:
  bool higher_is_better() const override { return true; }

 protected:
  void check(const Tensor& preds, const Tensor& targets) const override { require_same_shape("r2", preds, targets); }
  void accumulate(const Tensor& preds, const Tensor& targets) override {
    const auto p = preds.to(torch::kDouble), t = targets.to(torch::kDouble);
    add({t.sum(), t.square().sum(), (t - p).square().sum()});
  }
  double value() override {
    if (count_ < 2) return kNaN;
    const auto s = sums();
    const double ss_tot = s[1] - s[0] * s[0] / static_cast<double>(count_);
    return ss_tot > 0 ? 1.0 - s[2] / ss_tot : kNaN;
  }
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
  // Every process's scores and labels, gathered: the AUC is a ranking, not a sum.
  bool sync(torchfit::Communicator& comm) override {
    auto cat = [](const std::vector<Tensor>& parts) {
      return parts.empty() ? torch::empty({0}) : torch::cat(parts).to(torch::kCPU, torch::kFloat);
    };
    const auto scores = comm.all_gather_rows(cat(scores_));
    const auto labels = comm.all_gather_rows(cat(labels_));
    reset();
    if (scores.numel() > 0) {
      scores_.push_back(scores);
      labels_.push_back(labels);
    }
    return true;
  }
  bool state_dict(torch::serialize::OutputArchive& archive) const override {
    if (!scores_.empty()) {
      archive.write("scores", torch::cat(scores_));
      archive.write("labels", torch::cat(labels_));
    }
    return true;
  }
  void load_state_dict(torch::serialize::InputArchive& archive) override {
    reset();
    Tensor scores, labels;
    if (archive.try_read("scores", scores) && archive.try_read("labels", labels)) {
      scores_.push_back(scores);
      labels_.push_back(labels);
    }
  }

 private:
  std::vector<Tensor> scores_, labels_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Metric, "metrics", "1.0.0",
                            "Standard metrics: acc, accuracy, top_k_accuracy, macro_f1, confusion_matrix, auc, precision, "
                            "recall, f1, mae, mse, rmse, r2");
  info.provides = {"acc", "accuracy", "top_k_accuracy", "macro_f1", "confusion_matrix", "auc", "precision", "recall",
                   "f1", "mae", "mse", "rmse", "r2"};
  info.options->add_options()  //
      ("threshold", torchfit::number<double>(torchfit::NumberRange::between(0, 1, true, true))->default_value(0.5),
       "probability at or above which a binary prediction (a logit through a sigmoid) counts as positive; "
       "used by acc, precision, recall and f1")  //
      ("top-k", torchfit::number<int64_t>(torchfit::NumberRange::at_least(1))->default_value(5),
       "top_k_accuracy: a sample counts when its class is among the K highest scores");
  return info;
}

std::shared_ptr<torchfit::Metric> create(const std::string& name, const torchfit::PluginOptions& options) {
  const double threshold = options.count("threshold") ? options["threshold"].as<double>() : 0.5;
  if (name == "acc") return std::make_shared<BinaryAccuracy>("acc", threshold);
  if (name == "precision") return std::make_shared<BinaryRates>("precision", threshold, BinaryRates::Kind::Precision);
  if (name == "recall") return std::make_shared<BinaryRates>("recall", threshold, BinaryRates::Kind::Recall);
  if (name == "f1") return std::make_shared<BinaryRates>("f1", threshold, BinaryRates::Kind::F1);
  if (name == "accuracy") return std::make_shared<MulticlassAccuracy>();
  if (name == "top_k_accuracy") {
    const int64_t k = options.count("top-k") ? options["top-k"].as<int64_t>() : 5;
    return std::make_shared<TopKAccuracy>(k);
  }
  if (name == "macro_f1") return std::make_shared<Confusion>("macro_f1", ConfusionCounts::Kind::MacroF1);
  if (name == "confusion_matrix") return std::make_shared<Confusion>("confusion_matrix", ConfusionCounts::Kind::Accuracy);
  if (name == "auc") return std::make_shared<Auc>();
  if (name == "mae") return std::make_shared<Errors>("mae", Errors::Kind::Mae);
  if (name == "mse") return std::make_shared<Errors>("mse", Errors::Kind::Mse);
  if (name == "rmse") return std::make_shared<Errors>("rmse", Errors::Kind::Rmse);
  if (name == "r2") return std::make_shared<R2>();
  return nullptr;
}

}  // namespace

TORCHFIT_METRIC_PLUGIN(describe, create)
