// model_checkpoint: saves the best weights (and optionally the last and the top k) atomically.
#include <torchfit/checkpoint.hpp>
#include <torchfit/errors.hpp>
#include <torchfit/io.hpp>
#include <torchfit/log.hpp>
#include <torchfit/monitor.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>

namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

struct Settings {
  fs::path path = "checkpoint";
  torchfit::Monitor monitor;
  bool save_best_only = true;
  bool save_last = false;
  int64_t every_n_epochs = 1;
  int64_t top_k = 1;
};

// Writes happen on a background thread, one epoch's writes and deletions at a time and in
// order, so a save costs the training loop only a copy of the weights. The next epoch's save,
// the end of fit and an exception all wait for the previous one and report its error.
//
// Files, for --ckpt-path P:
//   P                 the best weights so far (save-best-only), or the latest saved ones
//   P.epoch007        per-epoch copies, kept for the top-k epochs by the monitor (top-k > 1, or -1 for all)
//   P.last            the weights after the latest epoch (save-last)
// Every write goes to a temporary file that is renamed over the target, so a crash mid-save
// leaves the previous file intact.
class ModelCheckpoint final : public torchfit::Callback {
 public:
  bool rank_zero_only() const override { return true; }
  explicit ModelCheckpoint(Settings s) : s_(std::move(s)), monitor_(s_.monitor) {}

  ~ModelCheckpoint() override {
    try {
      finish();
    } catch (const std::exception& e) {
      torchfit::logger("model_checkpoint")->error("{}", e.what());
    }
  }

  void on_fit_begin(torchfit::Context& ctx) override {
    torchfit::check_writable_parent(s_.path, "checkpoint path");
    monitor_.reset();
    top_epochs_.clear();
    top_values_.clear();
  }

  void on_fit_end(torchfit::Context& ctx) override { finish(); }

  void on_exception(torchfit::Context& ctx, const std::exception& error) override {
    try {
      finish();  // what was saved before the failure is complete on disk
    } catch (const std::exception& e) {
      torchfit::logger("model_checkpoint")->error("{}", e.what());
    }
  }

  void on_epoch_end(torchfit::Context& ctx) override {
    finish();  // the previous epoch's writes: done, or their error raised here
    plan_.clear();
    plan_epoch(ctx);
    if (plan_.empty()) return;
    // The previous writes are done (finish() above), so the snapshot's memory can be reused.
    if (!snapshot_) snapshot_ = std::make_shared<torchfit::WeightSnapshot>();
    torchfit::snapshot_weights(ctx.net(), *snapshot_);
    pending_ = std::async(std::launch::async, [plan = std::move(plan_), snapshot = snapshot_, model = ctx.net().name(),
                                               logs = ctx.logs] {
      for (const auto& step : plan) {
        if (step.write) {
          torchfit::save_snapshot(*snapshot, step.path, model, logs);
        } else {
          std::error_code ec;
          fs::remove(step.path, ec);
        }
      }
    });
  }

 private:
  struct Step {
    fs::path path;
    bool write;  // else delete
  };

  std::vector<const torchfit::Monitor*> monitors() const override { return {&monitor_}; }

  // What the files hold, read from the files themselves.
  std::vector<OutputFile> output_files() const override {
    std::vector<OutputFile> out;
    auto describe = [&](const fs::path& file, const std::string& prefix) {
      std::error_code ec;
      if (!fs::exists(file, ec)) return;
      try {
        const auto info = torchfit::read_checkpoint_info(file);
        std::string what = prefix + torchfit::format_value(info.logs.get("epoch").value_or(0));
        if (auto v = info.logs.get(monitor_.key())) what += " (" + monitor_.key() + " " + torchfit::format_value(*v) + ")";
        out.push_back({file.string(), what});
      } catch (const std::exception&) {
        out.push_back({file.string(), "weights (unreadable now)"});
      }
    };
    describe(s_.path, "weights of epoch ");
    if (s_.save_last) describe(last_path(), "latest weights, of epoch ");
    if (!top_epochs_.empty() && (s_.top_k > 1 || s_.top_k == -1)) {
      out.push_back({s_.path.string() + ".epochNNN", "weights of the " + std::to_string(top_epochs_.size()) +
                                                         " best epochs by " + monitor_.key()});
    }
    return out;
  }

  void finish() {
    if (pending_.valid()) pending_.get();
  }

  void plan_epoch(torchfit::Context& ctx) {
    if (s_.save_last) {
      plan_.push_back({last_path(), true});
    }
    if (ctx.epoch % s_.every_n_epochs != 0) {
      return;
    }
    const double current = monitor_.current(ctx);  // throws, listing the logged keys, when missing
    const bool improved = monitor_.update(current, ctx.epoch);
    if (improved) {
      torchfit::logger("model_checkpoint")
          ->info("<<<<<< reach best {} : {} >>>>>>", monitor_.key(), torchfit::format_value(current));
    }
    if (improved || !s_.save_best_only) {
      plan_.push_back({s_.path, true});
    }
    if (s_.top_k > 1 || s_.top_k == -1) {
      keep_top_k(ctx, current);
    }
  }

 public:

  torchfit::StateFields state_fields() override {
    return torchfit::StateFields().add(monitor_).add("top_epochs", top_epochs_).add("top_values", top_values_);
  }
  void state_dict(torch::serialize::OutputArchive& archive) const override {
    // The files of the epochs already done must be on disk before the state says they are.
    const_cast<ModelCheckpoint*>(this)->finish();
    Callback::state_dict(archive);
  }

 private:
  fs::path last_path() const { return fs::path(s_.path.string() + ".last"); }
  fs::path epoch_path(int64_t epoch) const {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".epoch%03lld", static_cast<long long>(epoch));
    return fs::path(s_.path.string() + suffix);
  }

  void keep_top_k(torchfit::Context& ctx, double current) {
    // Its rank: after every kept epoch at least as good (an equal value keeps the earlier epoch first).
    size_t rank = 0;
    while (rank < top_values_.size() && !monitor_.improves(current, top_values_[rank])) ++rank;
    if (s_.top_k != -1 && static_cast<int64_t>(rank) >= s_.top_k) {
      return;  // not among the k best: nothing to write
    }
    plan_.push_back({epoch_path(ctx.epoch), true});
    top_values_.insert(top_values_.begin() + static_cast<std::ptrdiff_t>(rank), current);
    top_epochs_.insert(top_epochs_.begin() + static_cast<std::ptrdiff_t>(rank), ctx.epoch);
    while (s_.top_k != -1 && static_cast<int64_t>(top_values_.size()) > s_.top_k) {
      plan_.push_back({epoch_path(top_epochs_.back()), false});
      top_values_.pop_back();
      top_epochs_.pop_back();
    }
  }

  Settings s_;
  torchfit::Monitor monitor_;
  std::vector<int64_t> top_epochs_;  // the k best epochs, best first
  std::vector<double> top_values_;  // their values
  std::vector<Step> plan_;
  std::shared_ptr<torchfit::WeightSnapshot> snapshot_;  // the weights being written, kept for the next save
  std::future<void> pending_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "model_checkpoint", "1.0.0",
                            "Saves the best weights (and optionally the last and the top k) atomically");
  info.options->add_options()                                                                         //
      ("ckpt-path", po::value<std::string>()->default_value("checkpoint"), "file for the best weights");
  torchfit::add_monitor_options(*info.options, "the best epoch", false);
  info.options->add_options()  //
      ("save-best-only", po::value<bool>()->default_value(true, "true"),
       "write the checkpoint only when the monitored value improves (else every considered epoch)")  //
      ("save-last", po::value<bool>()->default_value(false, "false"), "also write <ckpt-path>.last after every epoch")  //
      ("every-n-epochs", torchfit::number<int64_t>(torchfit::NumberRange::at_least(1))->default_value(1), "consider saving every N epochs")        //
      ("top-k", po::value<int64_t>()->default_value(1),
       "keep <ckpt-path>.epochNNN files for the k best epochs (1: only <ckpt-path>; -1: every epoch)");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  Settings s;
  s.path = o["ckpt-path"].as<std::string>();
  s.monitor = torchfit::monitor_from_options(o, "model_checkpoint");
  s.save_best_only = o["save-best-only"].as<bool>();
  s.save_last = o["save-last"].as<bool>();
  s.every_n_epochs = o["every-n-epochs"].as<int64_t>();
  s.top_k = o["top-k"].as<int64_t>();
  if (s.path.empty() || s.path.filename().empty()) {
    throw torchfit::ConfigError("model_checkpoint.ckpt-path must name a file, got '" + s.path.string() + "'");
  }
  if (s.top_k < 1 && s.top_k != -1) {
    throw torchfit::ConfigError("model_checkpoint.top-k must be at least 1, or -1 for all, got " +
                                std::to_string(s.top_k));
  }
  return std::make_shared<ModelCheckpoint>(std::move(s));
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
