// early_stopping: stops training when a monitored value stops improving; restores the best weights.
#include <torchfit/checkpoint.hpp>
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/monitor.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <cmath>

namespace {

namespace po = boost::program_options;

struct Settings {
  torchfit::Monitor monitor;
  int64_t patience = 5;
  std::optional<double> baseline;
  int64_t start_from_epoch = 0;
  bool restore_best_weights = true;
  bool check_finite = true;
  std::optional<double> divergence_threshold;
};

// Follows Keras' EarlyStopping: `wait` counts epochs since the last improvement, and training
// stops once it reaches `patience`. With a baseline, only an improvement that also beats the
// baseline resets `wait`, so a run that never gets past the baseline stops after `patience`
// epochs as the option promises (Keras skips that check on improving epochs). torchkeras'
// message and its "reload the best checkpoint" default are kept.
class EarlyStopping final : public torchfit::Callback {
 public:
  explicit EarlyStopping(Settings s) : s_(std::move(s)), monitor_(s_.monitor) {}

  void on_fit_begin(torchfit::Context& ctx) override {
    monitor_.reset();
    wait_ = 0;
    stopped_epoch_ = 0;
    best_weights_.clear();
  }

  std::vector<const torchfit::Monitor*> monitors() const override { return {&monitor_}; }

  void on_epoch_end(torchfit::Context& ctx) override {
    const double current = monitor_.current(ctx);  // throws, listing the logged keys, when missing
    if (s_.check_finite) check_finite(ctx, current);
    if (s_.divergence_threshold && (monitor_.higher_is_better() ? current < *s_.divergence_threshold
                                                                 : current > *s_.divergence_threshold)) {
      // Lightning's divergence_threshold: past it, the run has gone wrong rather than stalled.
      throw torchfit::Error(monitor_.key() + " is " + torchfit::format_value(current) + " at epoch " +
                            std::to_string(ctx.epoch) + ", worse than early_stopping.divergence-threshold " +
                            torchfit::format_value(*s_.divergence_threshold) + " (" + monitor_.mode_name() +
                            "): the run diverged. Lower --lr or set --clip-grad-norm");
    }
    if (ctx.epoch <= s_.start_from_epoch) {
      return;
    }
    ++wait_;
    if (monitor_.update(current, ctx.epoch)) {
      if (s_.restore_best_weights) {
        torchfit::snapshot_weights(ctx.net(), best_weights_);  // reuses the memory of the last one
      }
      if (!s_.baseline || monitor_.improves(current, *s_.baseline)) {
        wait_ = 0;
        return;
      }
      // Better than before but not yet past the baseline: patience keeps running out.
    }
    if (wait_ >= s_.patience) {
      stopped_epoch_ = ctx.epoch;
      const std::string message = "<<<<<< " + monitor_.key() + " without improvement in " + std::to_string(s_.patience) +
                                  " epoch,early stopping >>>>>>";
      torchfit::logger("early_stopping")->info(message);
      ctx.request_stop("early stopping: " + monitor_.key() + " did not improve for " + std::to_string(s_.patience) +
                       " epochs (best " + torchfit::format_value(monitor_.best()) + " at epoch " +
                       std::to_string(monitor_.best_epoch()) + ")");
    }
  }

  void on_fit_end(torchfit::Context& ctx) override {
    if (s_.restore_best_weights && !best_weights_.empty() && monitor_.best_epoch() != ctx.history().size()) {
      torchfit::restore_weights(ctx.net(), best_weights_);
      torchfit::logger("early_stopping")
          ->info("restored the weights of epoch {} ({} = {})", monitor_.best_epoch(), monitor_.key(),
                 torchfit::format_value(monitor_.best()));
    }
  }

  torchfit::StateFields state_fields() override {
    return torchfit::StateFields().add("wait", wait_).add("stopped_epoch", stopped_epoch_).add(monitor_);
  }
  // The fields, and the best epoch's weights.
  void state_dict(torch::serialize::OutputArchive& archive) const override {
    Callback::state_dict(archive);
    c10::List<std::string> names;
    for (size_t i = 0; i < best_weights_.size(); ++i) {
      names.push_back(best_weights_[i].first);
      archive.write("w" + std::to_string(i), best_weights_[i].second);
    }
    archive.write("best_weight_names", c10::IValue(names));
  }
  void load_state_dict(torch::serialize::InputArchive& archive) override {
    Callback::load_state_dict(archive);
    c10::IValue v;
    best_weights_.clear();
    if (archive.try_read("best_weight_names", v)) {
      const auto names = v.toList();
      for (size_t i = 0; i < names.size(); ++i) {
        torch::Tensor t;
        archive.read("w" + std::to_string(i), t);
        best_weights_.emplace_back(names.get(i).toStringRef(), t);
      }
    }
  }

 private:
  // Lightning's check_finite, Keras' TerminateOnNaN: a run whose loss or monitored value is no
  // longer a number has diverged, and ends as a failure (the runner exits 1), its last row kept.
  void check_finite(const torchfit::Context& ctx, double current) const {
    std::string bad;
    if (!std::isfinite(current)) bad = monitor_.key() + " is " + torchfit::format_value(current);
    if (auto loss = ctx.logs.get("train_loss"); loss && !std::isfinite(*loss) && monitor_.key() != "train_loss") {
      bad += (bad.empty() ? "" : " and ") + std::string("train_loss is ") + torchfit::format_value(*loss);
    }
    if (bad.empty()) return;
    throw torchfit::Error(bad + " at epoch " + std::to_string(ctx.epoch) +
                          ": the run diverged. Lower --lr, set --clip-grad-norm, or add nan_guard to --callbacks "
                          "to find the first bad batch (--early_stopping.check-finite false lets it run on)");
  }

  Settings s_;
  torchfit::Monitor monitor_;
  int64_t wait_ = 0;
  int64_t stopped_epoch_ = 0;
  torchfit::WeightSnapshot best_weights_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "early_stopping", "1.0.0",
                            "Stops training when a monitored value stops improving, then restores the best weights");
  torchfit::add_monitor_options(*info.options, "whether an epoch improved", true);
  info.options->add_options()  //
      ("patience", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0))->default_value(5), "epochs without improvement before stopping")  //
      ("baseline", torchfit::number<double>(), "value to reach; until it is beaten, patience keeps running out")  //
      ("start-from-epoch", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0))->default_value(0), "warm-up epochs during which nothing is counted")  //
      ("restore-best-weights", po::value<bool>()->default_value(true, "true"),
       "at the end of training, put back the weights of the best epoch (whatever stopped the run)")  //
      ("check-finite", po::value<bool>()->default_value(true, "true"),
       "end the run as a failure (exit 1) once the monitored value or train_loss is NaN or infinite")  //
      ("divergence-threshold", torchfit::number<double>(),
       "end the run as a failure (exit 1) once the monitored value is worse than this (a loss past it: diverged)");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  Settings s;
  s.monitor = torchfit::monitor_from_options(o, "early_stopping");
  s.patience = o["patience"].as<int64_t>();
  if (o.count("baseline")) s.baseline = o["baseline"].as<double>();
  s.start_from_epoch = o["start-from-epoch"].as<int64_t>();
  s.restore_best_weights = o["restore-best-weights"].as<bool>();
  s.check_finite = o["check-finite"].as<bool>();
  if (o.count("divergence-threshold")) s.divergence_threshold = o["divergence-threshold"].as<double>();
  return std::make_shared<EarlyStopping>(std::move(s));
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
