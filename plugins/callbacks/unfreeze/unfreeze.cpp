// unfreeze: releases the parameters frozen with --freeze (torchfit::freeze) at a given epoch,
// their learning rate warming up linearly: Lightning's BackboneFinetuning, fastai's fine_tune.
#include <torchfit/errors.hpp>
#include <torchfit/finetune.hpp>
#include <torchfit/log.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <algorithm>

namespace {

namespace po = boost::program_options;

struct Settings {
  int64_t epoch = 2;
  int64_t warmup = 0;
  std::vector<std::string> patterns;  // empty: every parameter frozen when the fit begins
};

class Unfreeze final : public torchfit::Callback {
 public:
  explicit Unfreeze(Settings s) : s_(std::move(s)) {}

  void on_fit_begin(torchfit::Context& ctx) override {
    auto& net = ctx.net();
    if (!s_.patterns.empty()) {
      names_ = torchfit::matching_parameters(net, s_.patterns);
    } else {
      names_.clear();
      for (const auto& p : net.module().named_parameters()) {
        if (!p.value().requires_grad()) names_.push_back(p.key());
      }
      if (names_.empty()) {
        throw torchfit::ConfigError("unfreeze has nothing to release: no parameter is frozen (freeze some with "
                                    "--freeze PATTERNS, or name them with --unfreeze.patterns)");
      }
    }
    // The optimizer's groups that hold only these parameters get the warm-up.
    std::vector<const c10::TensorImpl*> mine;
    for (const auto& p : net.module().named_parameters()) {
      if (std::find(names_.begin(), names_.end(), p.key()) != names_.end()) mine.push_back(p.value().unsafeGetTensorImpl());
    }
    groups_.clear();
    auto& groups = ctx.optimizer().param_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto& params = groups[g].params();
      const bool only_mine = !params.empty() && std::all_of(params.begin(), params.end(), [&](const torch::Tensor& t) {
        return std::find(mine.begin(), mine.end(), t.unsafeGetTensorImpl()) != mine.end();
      });
      if (only_mine) groups_.push_back(g);
    }
    if (base_.empty()) {
      for (size_t g : groups_) base_.push_back(groups[g].options().get_lr());
    }
    if (s_.warmup > 0 && groups_.empty()) {
      torchfit::logger("unfreeze")->warn("unfreeze.warmup-epochs: no optimizer parameter group holds only the frozen "
                                         "parameters, so their rate is not warmed up (the runner's --freeze makes such groups)");
    }
  }

  void on_epoch_begin(torchfit::Context& ctx) override {
    if (ctx.epoch < s_.epoch) return;
    if (ctx.epoch == s_.epoch) {
      torchfit::logger("unfreeze")
          ->info("epoch {}: {} parameter tensors released{}", ctx.epoch, names_.size(),
                 s_.warmup > 0 ? ", their rate warming up over " + std::to_string(s_.warmup) + " epochs" : "");
    }
    torchfit::unfreeze(ctx.net(), names_);
    if (s_.warmup > 0 && groups_.size() == base_.size()) {
      const double f = std::min(1.0, static_cast<double>(ctx.epoch - s_.epoch + 1) / static_cast<double>(s_.warmup + 1));
      auto& groups = ctx.optimizer().param_groups();
      for (size_t k = 0; k < groups_.size(); ++k) groups[groups_[k]].options().set_lr(base_[k] * f);
    }
  }

  // The full rates of the warmed-up groups: a run resumed during the warm-up finds its groups'
  // rates part-way up. (A resumed run's --freeze froze the same parameters again.)
  torchfit::StateFields state_fields() override { return torchfit::StateFields().add("base_lrs", base_); }

 private:
  Settings s_;
  std::vector<std::string> names_;
  std::vector<size_t> groups_;
  std::vector<double> base_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "unfreeze", "1.0.0",
                            "Releases the parameters frozen with --freeze at an epoch, warming their rate up");
  info.options->add_options()                                                                                //
      ("epoch", torchfit::number<int64_t>(torchfit::NumberRange::positive())->value_name("N")->default_value(2),
       "the epoch from whose start the frozen parameters train")  //
      ("warmup-epochs", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: none)"))->value_name("N")->default_value(0),
       "their learning rate rises linearly to the full rate over this many epochs (0: at once)")  //
      ("patterns", po::value<std::string>()->value_name("PATTERNS"),
       "the parameters to release (default: every parameter frozen when training starts)");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  Settings s;
  s.epoch = o["epoch"].as<int64_t>();
  s.warmup = o["warmup-epochs"].as<int64_t>();
  if (o.count("patterns")) s.patterns = torchfit::split_list(o["patterns"].as<std::string>());
  return std::make_shared<Unfreeze>(s);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
