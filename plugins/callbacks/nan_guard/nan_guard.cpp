// nan_guard: watches the training loss and gradients for NaN or infinity, and terminates,
// skips the batch, or rolls back to the last good state with a lower learning rate.
#include <torchfit/checkpoint.hpp>
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/scheduler.hpp>

#include <cmath>
#include <sstream>

namespace {

namespace po = boost::program_options;

enum class Policy { Terminate, SkipBatch, Rollback };

struct Settings {
  Policy policy = Policy::Terminate;
  bool check_grads = true;
  double lr_factor = 0.5;
  int64_t max_rollbacks = 3;
  int64_t max_skips = 10;
};

std::string describe_value(const torch::Tensor& t) {
  const auto d = t.detach();
  if (d.numel() == 1) return "is " + torchfit::format_value(d.item<double>());
  const bool nan = d.isnan().any().item<bool>();
  const bool inf = d.isinf().any().item<bool>();
  return std::string("contains ") + (nan && inf ? "NaN and infinity" : nan ? "NaN" : "infinity");
}

// One host sync per batch: every check is stacked and read back together.
class NanGuard final : public torchfit::Callback {
 public:
  explicit NanGuard(Settings s) : s_(s) {}

  std::vector<std::string> logged_keys(const torchfit::Context&) const override {
    if (s_.policy == Policy::SkipBatch) return {"skipped_batches"};
    return {};
  }

  void on_fit_begin(torchfit::Context& ctx) override {
    skipped_total_ = skipped_epoch_ = rollbacks_ = skipped_in_a_row_ = 0;
    if (s_.policy == Policy::Rollback && ctx.world_size > 1) {
      // One process rolling back alone would leave the processes with different weights.
      throw torchfit::ConfigError("nan_guard.policy rollback works in a single process only; with several use "
                                  "skip_batch (a skipped batch drops the step on every process) or terminate");
    }
  }

  // The last good state is the epoch's start (on a resume in the middle of an epoch: the
  // state resumed from). Every batch before passed the check, so it holds no NaN.
  void on_train_epoch_begin(torchfit::Context& ctx) override {
    if (ctx.batch_index == 0) skipped_epoch_ = 0;  // not when a resume continues the epoch
    if (s_.policy == Policy::Rollback) take_snapshot(ctx);
  }

  void on_after_backward(torchfit::Context& ctx) override {
    const auto problem = find_problem(ctx);
    if (problem.empty()) {
      skipped_in_a_row_ = 0;
      return;
    }
    const std::string where = "at epoch " + std::to_string(ctx.epoch) + ", batch " +
                              std::to_string(ctx.batch_index + 1) +
                              (ctx.num_batches >= 0 ? " of " + std::to_string(ctx.num_batches) : std::string()) +
                              " (step " + std::to_string(ctx.global_step) + ")";
    switch (s_.policy) {
      case Policy::Terminate:
        throw torchfit::Error(problem + " " + where +
                              "; training stopped. Lower --lr, set --clip-grad-norm, or choose "
                              "--nan_guard.policy skip_batch or rollback");
      case Policy::SkipBatch:
        if (skipped_in_a_row_ >= s_.max_skips) {
          // Every batch bad: the weights themselves are no longer numbers; skipping cannot help.
          throw torchfit::Error(problem + " " + where + " after " + std::to_string(skipped_in_a_row_) +
                                " skipped batches in a row (nan_guard.max-skips): the run diverged; training "
                                "stopped. Lower --lr or set --clip-grad-norm");
        }
        ++skipped_in_a_row_;
        ++skipped_epoch_;
        ++skipped_total_;
        ctx.skip_batch();
        torchfit::logger("nan_guard")->warn("{} {}; batch skipped ({} so far)", problem, where, skipped_total_);
        return;
      case Policy::Rollback:
        if (rollbacks_ >= s_.max_rollbacks) {
          throw torchfit::Error(problem + " " + where + " after " + std::to_string(rollbacks_) +
                                " rollbacks (nan_guard.max-rollbacks); training stopped");
        }
        rollback(ctx, problem + " " + where);
        return;
    }
  }

  void on_train_epoch_end(torchfit::Context& ctx) override {
    if (s_.policy == Policy::SkipBatch) ctx.logs.set("skipped_batches", static_cast<double>(skipped_epoch_));
  }

  void on_fit_end(torchfit::Context& ctx) override {
    if (skipped_total_ > 0) {
      torchfit::logger("nan_guard")->warn("{} batches were skipped for values that were not finite", skipped_total_);
    }
    if (rollbacks_ > 0) {
      torchfit::logger("nan_guard")->warn("rolled back {} times for values that were not finite", rollbacks_);
    }
  }

  torchfit::StateFields state_fields() override {
    return torchfit::StateFields()
        .add("skipped_total", skipped_total_)
        .add("skipped_epoch", skipped_epoch_)
        .add("rollbacks", rollbacks_)
        .add("skipped_in_a_row", skipped_in_a_row_);
  }

 private:
  std::string find_problem(torchfit::Context& ctx) const {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> finite{torch::isfinite(ctx.loss.detach()).all()};
    std::vector<std::pair<std::string, torch::Tensor>> grads;
    if (s_.check_grads) {
      for (const auto& p : ctx.net().module().named_parameters()) {
        const auto& g = p.value().grad();
        if (!g.defined()) continue;
        finite.push_back(torch::isfinite(g).all());
        grads.emplace_back(p.key(), g);
      }
    }
    const auto ok = torch::stack(finite).to(torch::kCPU);
    const bool* flags = ok.data_ptr<bool>();
    if (!flags[0]) return "the training loss " + describe_value(ctx.loss);
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!flags[i + 1]) return "the gradient of '" + grads[i].first + "' " + describe_value(grads[i].second);
    }
    return {};
  }

  void take_snapshot(torchfit::Context& ctx) {
    torchfit::snapshot_weights(ctx.net(), snapshot_);
    torch::serialize::OutputArchive archive;
    ctx.optimizer().save(archive);
    std::ostringstream out;
    archive.save_to(out);
    optimizer_state_ = std::move(out).str();
  }

  void rollback(torchfit::Context& ctx, const std::string& what) {
    const auto rates = torchfit::learning_rates(ctx.optimizer());
    torchfit::restore_weights(ctx.net(), snapshot_);
    std::istringstream in(optimizer_state_);
    torch::serialize::InputArchive archive;
    archive.load_from(in, ctx.device());
    ctx.optimizer().load(archive);
    auto& groups = ctx.optimizer().param_groups();
    for (size_t g = 0; g < groups.size() && g < rates.size(); ++g) {
      groups[g].options().set_lr(rates[g] * s_.lr_factor);
    }
    ctx.skip_batch();
    ++rollbacks_;
    torchfit::logger("nan_guard")
        ->warn("{}; rolled back to the start of epoch {} and lowered the learning rate from {} to {} ({} of {})", what,
               ctx.epoch, torchfit::format_value(rates.empty() ? 0.0 : rates[0]),
               torchfit::format_value(rates.empty() ? 0.0 : rates[0] * s_.lr_factor), rollbacks_, s_.max_rollbacks);
  }

  Settings s_;
  int64_t skipped_epoch_ = 0;
  int64_t skipped_total_ = 0;
  int64_t rollbacks_ = 0;
  int64_t skipped_in_a_row_ = 0;
  torchfit::WeightSnapshot snapshot_;
  std::string optimizer_state_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "nan_guard", "1.0.0",
                            "Stops, skips the batch, or rolls back when the loss or a gradient is NaN or infinite");
  info.options->add_options()  //
      ("policy", po::value<std::string>()->default_value("terminate"),
       "terminate (stop with an error naming the epoch, batch and value), skip_batch (no optimizer step for that "
       "batch; skips are counted in the history column skipped_batches), or rollback (restore the weights and "
       "optimizer of the epoch's start and lower the learning rate)")  //
      ("check-grads", po::value<bool>()->default_value(true), "also check every parameter's gradient")  //
      ("lr-factor", torchfit::number<double>(torchfit::NumberRange::between(0, 1, true, true))->default_value(0.5, "0.5"), "rollback: multiply the learning rate by this")  //
      ("max-rollbacks", torchfit::number<int64_t>(torchfit::NumberRange::at_least(1))->default_value(3), "rollback: stop with an error after this many")  //
      ("max-skips", torchfit::number<int64_t>(torchfit::NumberRange::at_least(1))->default_value(10),
       "skip_batch: stop with an error when this many batches in a row were skipped");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  Settings s;
  const auto policy = o["policy"].as<std::string>();
  if (policy == "terminate") {
    s.policy = Policy::Terminate;
  } else if (policy == "skip_batch") {
    s.policy = Policy::SkipBatch;
  } else if (policy == "rollback") {
    s.policy = Policy::Rollback;
  } else {
    throw torchfit::ConfigError("nan_guard.policy must be terminate, skip_batch or rollback, got '" + policy + "'");
  }
  s.check_grads = o["check-grads"].as<bool>();
  s.lr_factor = o["lr-factor"].as<double>();
  s.max_rollbacks = o["max-rollbacks"].as<int64_t>();
  s.max_skips = o["max-skips"].as<int64_t>();
  return std::make_shared<NanGuard>(s);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
