// Trainer: the fit / evaluate / predict loops and hook dispatch.
#include "torchfit/trainer.hpp"

#include <chrono>
#include <algorithm>
#include <cmath>
#include <csignal>

#include "torchfit/checkpoint.hpp"
#include "torchfit/compat.hpp"
#include "torchfit/device.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/log.hpp"
#include "torchfit/monitor.hpp"
#include "torchfit/text.hpp"
#include "torchfit/signals.hpp"
#include "trainer_state.hpp"

namespace torchfit {

namespace {

using Hook = void (Callback::*)(Context&);

// Runs one hook on every callback in order. An exception leaves with the callback's and the
// hook's name; the callback's library is still loaded here, so its message is still readable.
inline void dispatch(const Callbacks& callbacks, Context& ctx, Hook hook, const char* hook_name) {
  for (const auto& cb : callbacks) {
    try {
      ((*cb).*hook)(ctx);
    } catch (const CallbackError&) {
      throw;
    } catch (const c10::Error& e) {
      throw CallbackError(cb->name(), hook_name, e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw CallbackError(cb->name(), hook_name, e.what());
    } catch (...) {
      throw CallbackError(cb->name(), hook_name, "an exception that is not a std::exception");
    }
  }
}

#define TORCHFIT_DISPATCH(callbacks, ctx, hook) dispatch(callbacks, ctx, &Callback::hook, #hook)

const char* stage_name(Stage stage) {
  switch (stage) {
    case Stage::Fit:
      return "fit";
    case Stage::Train:
      return "training";
    case Stage::Validate:
      return "validation";
    case Stage::Predict:
      return "prediction";
  }
  return "?";
}

// Runs `body`; on failure tells every callback (on_exception) and re-throws. LibTorch's own
// errors are re-thrown without their C++ stack dump, with where in the loop they happened.
template <typename Body>
void guarded(const Callbacks& callbacks, Context& ctx, Body&& body) {
  auto notify = [&](const std::exception& error) {
    for (const auto& cb : callbacks) {
      try {
        cb->on_exception(ctx, error);
      } catch (const std::exception& e) {
        logger("trainer")->warn("callback '{}' failed in on_exception: {}", cb->name(), e.what());
      } catch (...) {
        logger("trainer")->warn("callback '{}' failed in on_exception", cb->name());
      }
    }
  };
  try {
    body();
  } catch (const c10::Error& e) {
    const std::string where = ctx.stage == Stage::Fit
                                  ? std::string("before training")
                                  : std::string(stage_name(ctx.stage)) + " (epoch " + std::to_string(ctx.epoch) +
                                        ", batch " + std::to_string(ctx.batch_index) + ")";
    Error error("LibTorch failed during " + where + ": " + e.what_without_backtrace());
    notify(error);
    throw error;
  } catch (const std::exception& e) {
    notify(e);
    throw;
  }
}

// Drops a batch's tensors once its last hook has run, not when the next batch replaces them:
// alive while the next batch was gathered, they made glibc return heap pages and fault them in
// again (MLP benchmark: 8,000 to 215,000 page faults an epoch against the hand loop's ~1,500,
// and up to 40% more time; docs/performance.md).
void release_batch(Context& ctx) {
  ctx.batch = Batch();
  ctx.outputs = Outputs();
  ctx.loss = torch::Tensor();
}

}  // namespace

// ---- Context -------------------------------------------------------------------------------

Net& Context::net() const { return trainer_->net_; }
torch::optim::Optimizer& Context::optimizer() const { return *trainer_->optimizer_; }
torch::Device Context::device() const { return trainer_->device_; }
const History& Context::history() const { return trainer_->history_; }
Logs Context::running_logs() const { return trainer_->running_logs(); }
std::optional<bool> Context::higher_is_better(const std::string& key) const {
  return trainer_->higher_is_better(key);
}

void Context::request_stop(std::string reason, StopWhen when) {
  if (!stop_requested_ || (when == StopWhen::Now && stop_when_ != StopWhen::Now)) {
    stop_reason_ = std::move(reason);
    stop_when_ = when;
  }
  stop_requested_ = true;
}

// ---- Trainer -------------------------------------------------------------------------------

Trainer::Trainer(Net net, Loss loss, Metrics metrics, std::shared_ptr<torch::optim::Optimizer> optimizer,
                 std::shared_ptr<Schedule> schedule)
    : Trainer(std::move(net), Losses{{"", std::move(loss), 1.0, ""}}, std::move(metrics), std::move(optimizer),
              std::move(schedule)) {}

Trainer::Trainer(Net net, Losses losses, Metrics metrics, std::shared_ptr<torch::optim::Optimizer> optimizer,
                 std::shared_ptr<Schedule> schedule)
    : net_(std::move(net)),
      losses_(std::move(losses)),
      metrics_(std::move(metrics)),
      optimizer_(std::move(optimizer)),
      schedule_(std::move(schedule)),
      device_(default_device()) {
  if (!net_) {
    throw ConfigError("Trainer needs a net; got an empty one");
  }
  if (losses_.empty()) {
    throw ConfigError("Trainer needs a loss; got none");
  }
  per_output_ = !(losses_.size() == 1 && losses_[0].output.empty());
  std::vector<std::string> outputs;
  for (const auto& l : losses_) {
    if (!l.loss) {
      throw ConfigError(l.output.empty() ? std::string("Trainer needs a loss; got an empty one")
                                         : "the loss for output '" + l.output + "' is empty");
    }
    if (per_output_ && l.output.empty()) {
      throw ConfigError("with several losses each needs the name of the output it scores ({\"cls\", loss}, ...)");
    }
    if (!std::isfinite(l.weight) || l.weight < 0) {
      throw ConfigError("the weight of the loss for output '" + l.output + "' must be a finite number >= 0, got " +
                        std::to_string(l.weight));
    }
    if (std::find(outputs.begin(), outputs.end(), l.output) != outputs.end()) {
      throw ConfigError("two losses are given for output '" + l.output + "'; give each output one loss");
    }
    outputs.push_back(l.output);
  }
  for (size_t i = 0; i < metrics_.size(); ++i) {
    const std::string& name = metrics_[i].first;
    if (!metrics_[i].second) {
      throw ConfigError("metric '" + name + "' is null");
    }
    if (name.empty() || name == "loss") {
      throw ConfigError("a metric may not be named '" + name + "' (it would clash with the loss)");
    }
    for (size_t j = 0; j < i; ++j) {
      if (name == metrics_[j].first) {
        throw ConfigError("two metrics are named '" + name + "'; give each metric its own name");
      }
    }
    // Which output it measures: the longest output name it begins with, then '_'.
    std::string bound;
    if (per_output_) {
      for (const auto& o : outputs) {
        if (name.size() > o.size() + 1 && name.compare(0, o.size() + 1, o + "_") == 0 && o.size() >= bound.size()) {
          bound = o;
        }
      }
      if (bound.empty()) {
        std::string names;
        for (const auto& o : outputs) names += (names.empty() ? "" : ", ") + o + "_" + name;
        throw ConfigError("metric '" + name + "' does not say which output it measures: name it after one (" + names +
                          ")");
      }
      if (name == bound + "_loss") {
        throw ConfigError("a metric may not be named '" + name + "' (it would clash with the loss of output '" + bound +
                          "')");
      }
    }
    std::string target;
    for (const auto& l : losses_) {
      if (l.output == bound) target = l.target;
    }
    metric_bindings_.push_back({bound, target, "metric '" + name + "'"});
  }
  net_.to(device_);
  if (!optimizer_) {
    optimizer_ = std::make_shared<torch::optim::Adam>(net_.parameters(), torch::optim::AdamOptions(3e-4));
  }
}

Trainer::Trainer(Net net, std::shared_ptr<Step> step, Metrics metrics,
                 std::shared_ptr<torch::optim::Optimizer> optimizer, std::shared_ptr<Schedule> schedule)
    : Trainer(std::move(net), Losses{{"", Loss([](const torch::Tensor&, const torch::Tensor&) -> torch::Tensor {
                                            throw Error("a trainer with a custom step has no loss of its own");
                                          }, "step", TargetShape::Any), 1.0, ""}},
              std::move(metrics), optimizer ? optimizer : (step && !step->optimizers().empty() ? step->optimizers()[0].second : nullptr),
              std::move(schedule)) {
  if (!step) throw ConfigError("Trainer was given an empty custom step");
  step_ = std::move(step);
  losses_.clear();
}

const Loss& Trainer::loss() const {
  static const Loss none;
  return losses_.empty() ? none : losses_.front().loss;
}

std::vector<std::string> Trainer::loss_outputs() const {
  std::vector<std::string> out;
  for (const auto& l : losses_) out.push_back(l.output);
  return out;
}

void Trainer::to(torch::Device device) {
  net_.to(device);
  device_ = device;
}

void Trainer::reset_accumulators() {
  loss_sum_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  output_loss_sums_.clear();
  if (per_output_) {
    for (size_t k = 0; k < losses_.size(); ++k) output_loss_sums_.push_back(torch::zeros_like(loss_sum_));
  }
  batch_losses_.assign(per_output_ ? losses_.size() : 0, torch::Tensor());
  step_sums_.clear();
  sample_count_ = 0;
  for (auto& [name, metric] : metrics_) {
    metric->reset();
  }
}

void Trainer::write_epoch_logs(Logs& logs, const char* prefix) {
  const std::string p(prefix);
  double loss_sum = 0, count = static_cast<double>(sample_count_);
  std::vector<double> output_sums(output_loss_sums_.size(), 0.0);
  if (comm_) {
    // Exact over every process: sums and counts added, never a mean of means.
    std::vector<torch::Tensor> parts{loss_sum_.to(torch::kCPU, torch::kDouble), torch::tensor(count, torch::kDouble)};
    for (const auto& t : output_loss_sums_) parts.push_back(t.to(torch::kCPU, torch::kDouble));
    auto sums = torch::stack(parts);
    comm_->all_reduce_sum(sums);
    loss_sum = sums[0].item<double>();
    count = sums[1].item<double>();
    for (size_t k = 0; k < output_sums.size(); ++k) output_sums[k] = sums[static_cast<int64_t>(k) + 2].item<double>();
    for (auto& [name, metric] : metrics_) {
      if (!metric->sync(*comm_) && !warned_metric_sync_) {
        warned_metric_sync_ = true;
        logger("trainer")->warn("metric '{}' cannot combine its state across processes (no sync()); its values cover "
                                "this process's shard only", name);
      }
    }
  } else if (sample_count_) {
    loss_sum = loss_sum_.item<double>();
    for (size_t k = 0; k < output_sums.size(); ++k) output_sums[k] = output_loss_sums_[k].item<double>();
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  logs.set(p + "loss", count > 0 ? loss_sum / count : nan);
  for (size_t k = 0; k < output_sums.size(); ++k) {
    logs.set(p + losses_[k].output + "_loss", count > 0 ? output_sums[k] / count : nan);
  }
  for (const auto& [name, sum] : step_sums_) {
    logs.set(p + name, count > 0 ? sum.item<double>() / count : nan);
  }
  for (auto& [name, metric] : metrics_) {
    logs.set(p + name, metric->compute());
  }
}

Logs Trainer::running_logs() const {
  Logs logs;
  if (sample_count_ > 0) {
    logs.set("loss", loss_sum_.item<double>() / static_cast<double>(sample_count_));
    for (size_t k = 0; k < output_loss_sums_.size(); ++k) {
      logs.set(losses_[k].output + "_loss", output_loss_sums_[k].item<double>() / static_cast<double>(sample_count_));
    }
    for (const auto& [name, sum] : step_sums_) logs.set(name, sum.item<double>() / static_cast<double>(sample_count_));
    for (const auto& [name, metric] : metrics_) {
      logs.set(name, metric->compute());
    }
  }
  return logs;
}

std::optional<bool> Trainer::higher_is_better(const std::string& key) const {
  std::string name = key;
  for (const char* prefix : {"train_", "val_"}) {
    if (name.rfind(prefix, 0) == 0) {
      name = name.substr(std::string(prefix).size());
      break;
    }
  }
  if (name == "loss") {
    return false;
  }
  for (const auto& l : losses_) {
    if (per_output_ && name == l.output + "_loss") return false;
  }
  for (const auto& [metric_name, metric] : metrics_) {
    if (metric_name == name) {
      return metric->higher_is_better();
    }
  }
  return std::nullopt;
}

bool Trainer::step_optimizer(Context& ctx, torch::optim::Optimizer& optimizer, const Callbacks& callbacks,
                             const FitOptions& options, bool update_scale) {
  std::vector<torch::Tensor> params;  // of every group: the norm clipped is the global one
  if (scaler_ || options.clip_grad_norm() > 0 || options.clip_grad_value() > 0) {
    for (auto& group : optimizer.param_groups()) {
      for (const auto& p : group.params()) params.push_back(p);
    }
  }
  if (scaler_) {
    // The gradients back to their true size (exactly: the scale is a power of two), before
    // clipping and the hooks see them. An inf or NaN among them: no step, a smaller scale.
    const double scale = scaler_->scale_value();
    const bool finite = scaler_->unscale(params);
    if (update_scale) scaler_->update(!finite);
    if (!finite) {
      found_inf_ = true;
      logger("trainer")->debug("step skipped at epoch {}, batch {}: inf or NaN gradients at loss scale {}; scale now {}",
                               ctx.epoch, ctx.batch_index, scale, scaler_->scale_value());
      compat::zero_grad(optimizer);
      return false;
    }
  }
  if (options.clip_grad_norm() > 0) torch::nn::utils::clip_grad_norm_(params, options.clip_grad_norm());
  if (options.clip_grad_value() > 0) torch::nn::utils::clip_grad_value_(params, options.clip_grad_value());
  TORCHFIT_DISPATCH(callbacks, ctx, on_before_optimizer_step);
  optimizer.step();
  compat::zero_grad(optimizer);
  return true;
}

void Trainer::optimizer_step(Context& ctx, const Callbacks& callbacks, const FitOptions& options) {
  if (!step_optimizer(ctx, *optimizer_, callbacks, options, true)) return;
  ++ctx.global_step;
}

// ---- custom steps --------------------------------------------------------------------------

void Context::backward(const torch::Tensor& loss) { trainer_->step_backward(*this, loss); }
void Context::step(torch::optim::Optimizer& optimizer) { trainer_->step_optimizer_from_step(*this, optimizer); }

Outputs Step::predict_step(Context& ctx) { return ctx.net().forward(ctx.batch); }

namespace {
void need_train_step(const Context& ctx, const Step* step, const char* what) {
  if (!step || ctx.stage != Stage::Train) {
    throw ConfigError(std::string(what) + " is for a custom Step's train_step (the default step does its own)");
  }
}
}  // namespace

void Trainer::step_backward(Context& ctx, const torch::Tensor& loss) {
  need_train_step(ctx, step_.get(), "ctx.backward()");
  if (!loss.defined() || loss.numel() != 1) {
    throw DataError("ctx.backward() needs one number (a mean loss), got " +
                    (loss.defined() ? shape_string(loss.sizes()) : std::string("an undefined tensor")));
  }
  if (ctx.skip_batch_) return;
  ctx.loss = loss;
  TORCHFIT_DISPATCH(*ctx.callbacks_, ctx, on_before_backward);
  if (ctx.skip_batch_) return;
  (scaler_ ? scaler_->scale(loss) : loss).backward();
  TORCHFIT_DISPATCH(*ctx.callbacks_, ctx, on_after_backward);
}

void Trainer::step_optimizer_from_step(Context& ctx, torch::optim::Optimizer& optimizer) {
  need_train_step(ctx, step_.get(), "ctx.step()");
  if (ctx.skip_batch_) {
    compat::zero_grad(optimizer);
    return;
  }
  step_stepped_ = true;
  step_optimizer(ctx, optimizer, *ctx.callbacks_, *ctx.options_, false);
}

void Trainer::add_step_values(const StepValues& values, int64_t batch_size, const char* who) {
  bool has_loss = false;
  std::string names;
  for (const auto& [name, value] : values) {
    names += (names.empty() ? "" : ", ") + name;
    if (!value.defined() || value.numel() != 1) {
      throw DataError(std::string(who) + " returned '" + name + "' of shape " +
                      (value.defined() ? shape_string(value.sizes()) : std::string("(undefined)")) +
                      "; each value must be one number for the batch (a mean)");
    }
  }
  for (const auto& entry : values) {
    const std::string& name = entry.first;  // not a structured binding: a lambda captures it below
    const auto v = entry.second.detach().reshape({});
    if (name == "loss") {
      loss_sum_.add_(v, batch_size);
      has_loss = true;
      continue;
    }
    auto it = std::find_if(step_sums_.begin(), step_sums_.end(), [&](const auto& e) { return e.first == name; });
    if (it == step_sums_.end()) {
      step_sums_.emplace_back(name, torch::zeros_like(loss_sum_));
      it = std::prev(step_sums_.end());
    }
    it->second.add_(v, batch_size);
  }
  if (!has_loss) {
    throw DataError(std::string(who) + " returned no \"loss\" (it returned " + (names.empty() ? "nothing" : names) +
                    "); return {{\"loss\", value}, ...}: it is logged as the loss and early stopping can watch it");
  }
}

bool Trainer::run_step(Context& ctx, const Callbacks& callbacks) {
  found_inf_ = step_stepped_ = false;
  StepValues values;
  {
    AutocastGuard autocast(precision_, device_);
    values = step_->train_step(ctx);
  }
  if (scaler_ && step_stepped_) scaler_->update(found_inf_);
  if (ctx.skip_batch_) return false;
  torch::NoGradGuard no_grad;
  add_step_values(values, ctx.batch_size, "train_step");
  for (const auto& [name, value] : values) {
    if (name == "loss") ctx.loss = value;
  }
  if (!metrics_.empty()) {
    if (ctx.outputs.empty()) {
      throw DataError("metric '" + metrics_.front().first + "' needs the net's outputs, but the step left ctx.outputs "
                      "empty; set ctx.outputs in train_step and validation_step");
    }
    update_metrics(ctx, true);
  }
  sample_count_ += ctx.batch_size;
  ++ctx.global_step;
  return true;
}

void Trainer::forward(Context& ctx) {
  AutocastGuard autocast(precision_, device_);
  ctx.outputs = net_.forward(ctx.batch);
  ctx.loss = compute_loss(ctx);
}

std::pair<size_t, size_t> Trainer::pair_for(const Context& ctx, const std::string& output, const std::string& target,
                                            const std::string& what) const {
  const Outputs& out = ctx.outputs;
  const Batch& batch = ctx.batch;
  if (output.empty()) {
    // One loss: the net's one output against the batch's one target.
    if (out.count() != 1) {
      throw DataError("the net returned " + std::to_string(out.count()) + " outputs (" + out.describe() +
                      ") but the trainer has one loss; give one loss per output (Losses{{\"" + out.name(0) +
                      "\", loss}, ...})");
    }
    const size_t targets = batch.count(Role::Target);
    if (targets != 1) {
      throw DataError(what + " needs the batch's target, but the batch has " + std::to_string(targets) +
                      " targets (" + batch.describe() + ")" +
                      (targets ? "; give one loss per output, naming its target" : ""));
    }
    size_t t = 0;
    while (batch.role(t) != Role::Target) ++t;
    return {0, t};
  }
  const size_t o = out.find(output);
  if (o == out.count()) {
    throw DataError(what + " is for output '" + output + "', but the net returned (" + out.describe() +
                    "); name the outputs with Net::output_names or return a map");
  }
  const std::string& field = target.empty() ? output : target;
  const size_t t = batch.find(field);
  if (t == batch.count() || batch.role(t) != Role::Target) {
    throw DataError(what + " for output '" + output + "' needs the target field '" + field +
                    "', but the batch has (" + batch.describe() + "); name the dataset's target so, or give "
                    "OutputLoss::target");
  }
  return {o, t};
}

torch::Tensor Trainer::compute_loss(const Context& ctx) {
  auto one = [&](size_t k) {
    const auto& entry = losses_[k];
    static const std::string kWhat = "the loss";
    const auto [o, t] = pair_for(ctx, entry.output, entry.target, kWhat);
    auto value = entry.loss(ctx.outputs[o], ctx.batch[t]);
    if (value.dim() != 0) {
      throw DataError("the loss must be one number per batch (a mean), but '" + entry.loss.name() +
                      "'" + (entry.output.empty() ? "" : " (output '" + entry.output + "')") + " returned shape " +
                      shape_string(value.sizes()) + "; use reduction mean");
    }
    return value;
  };
  if (!per_output_) return one(0);
  torch::Tensor total;
  for (size_t k = 0; k < losses_.size(); ++k) {
    batch_losses_[k] = one(k);
    auto weighted = losses_[k].weight == 1.0 ? batch_losses_[k] : batch_losses_[k] * losses_[k].weight;
    total = k == 0 ? weighted : total + weighted;
  }
  return total;
}

void Trainer::update_metrics(const Context& ctx, bool detach) {
  for (size_t i = 0; i < metrics_.size(); ++i) {
    const auto& bound = metric_bindings_[i];
    const auto [o, t] = pair_for(ctx, bound.output, bound.target, bound.label);
    const auto& preds = ctx.outputs[o];
    metrics_[i].second->update(detach ? preds.detach() : preds, ctx.batch[t]);
  }
}

void Trainer::preflight(Context& ctx, FitRun& run) {
  const auto start = std::chrono::steady_clock::now();
  // What one batch changes, kept to be put back: the weights and buffers (batch norm's running
  // statistics), the gradients (zero_grad leaves none), and the generators dropout draws from.
  const WeightSnapshot weights = snapshot_weights(net_);
  at::Generator cpu = at::globalContext().defaultGenerator(at::kCPU);
  const torch::Tensor cpu_state = cpu.get_state();
  std::optional<at::Generator> cuda;
  torch::Tensor cuda_state;
  if (device_.is_cuda()) {
    cuda = at::globalContext().defaultGenerator(torch::Device(torch::kCUDA, device_.has_index() ? device_.index() : 0));
    cuda_state = cuda->get_state();
  }
  const int64_t epoch = ctx.epoch;
  auto put_back = [&] {
    restore_weights(net_, weights);
    compat::zero_grad(*optimizer_);
    cpu.set_state(cpu_state);
    if (cuda) cuda->set_state(cuda_state);
    reset_accumulators();
  };
  // The first batch of epoch 1 of `data` through forward, the loss (and backward when
  // training) and the metrics' updates (their values are not computed: one batch may lack a class).
  auto one_batch = [&](Stage stage, const DataLoader& data) {
    const bool training = stage == Stage::Train;
    ctx.stage = stage;
    training ? net_.train() : net_.eval();
    reset_accumulators();
    ctx.batch = data.epoch(0).batch(0);
    ctx.batch_size = ctx.batch.size();
    torch::AutoGradMode grad(training);
    forward(ctx);
    if (training) ctx.loss.backward();
    torch::NoGradGuard no_grad;
    update_metrics(ctx, training);
  };
  try {
    ctx.epoch = 1;
    ctx.batch_index = 0;
    one_batch(Stage::Train, run.train);
    if (run.has_val) one_batch(Stage::Validate, run.val);
    net_.train();
    // The state as epoch 1's end would save it: every callback's state_dict, the optimizer.
    (void)serialize_state(ctx, run, {{1, 0, false}, false, false}, Logs());
  } catch (...) {
    put_back();  // the context still says where it failed (epoch 1, the batch, the stage)
    throw;
  }
  put_back();
  ctx.batch = Batch();
  ctx.outputs = Outputs();
  ctx.loss = torch::Tensor();
  ctx.logs.clear();
  ctx.stage = Stage::Fit;
  ctx.epoch = epoch;
  ctx.batch_index = 0;
  ctx.batch_size = 0;
  logger("trainer")->debug("preflight passed in {:.2f} ms: one batch through training, validation and a state save",
                            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
}

void Trainer::check_monitored_keys(const Context& ctx, const FitRun& run) const {
  // What an epoch of the default step logs: a custom step's own values are known only once it ran.
  if (!step_) check_logged_keys(ctx, run);
  // Which way each monitor's key is better: known for the loss and the metrics, whatever the step.
  for (const auto& cb : run.callbacks) {
    for (const Monitor* monitor : cb->monitors()) monitor->resolve(ctx);
  }
}

void Trainer::check_logged_keys(const Context& ctx, const FitRun& run) const {
  std::vector<std::string> logged{"epoch"};
  for (const char* prefix : {"train_", "val_"}) {
    if (std::string(prefix) == "val_" && !run.has_val) break;
    logged.push_back(prefix + std::string("loss"));
    if (per_output_) {
      for (const auto& l : losses_) logged.push_back(prefix + l.output + "_loss");
    }
    for (const auto& [name, metric] : metrics_) logged.push_back(prefix + name);
  }
  for (const auto& cb : ctx.options_->callbacks()) {
    for (auto& key : cb->logged_keys(ctx)) logged.push_back(std::move(key));
  }
  logged.push_back("time");
  for (const auto& cb : run.callbacks) {
    auto keys = cb->monitored_keys();
    for (const Monitor* monitor : cb->monitors()) {
      if (!monitor->key_may_be_missing()) keys.push_back(monitor->key());
    }
    for (const auto& key : keys) {
      if (std::find(logged.begin(), logged.end(), key) != logged.end()) continue;
      std::string message = "callback '" + cb->name() + "' monitors '" + key + "', which no epoch of this fit logs";
      if (key.rfind("val_", 0) == 0 && !run.has_val) message += " (there is no validation data)";
      std::string close = closest_name(key, logged);
      for (size_t i = 0; i < logged.size() && close.empty(); ++i) {
        // Keras' val_accuracy for val_acc: one name starts with the other.
        const auto& a = key.size() < logged[i].size() ? key : logged[i];
        const auto& b = key.size() < logged[i].size() ? logged[i] : key;
        if (a.size() >= 5 && b.compare(0, a.size(), a) == 0) close = logged[i];
      }
      if (!close.empty()) message += " (did you mean '" + close + "'?)";
      message += ". The logged values are:";
      for (size_t i = 0; i < logged.size(); ++i) message += (i ? ", " : " ") + logged[i];
      message += " (a callback that logs a value itself names it in logged_keys())";
      throw ConfigError(message);
    }
  }
}

void Trainer::check_stop_signal(Context& ctx) {
  if (const int signal = stop_signal(); signal != 0 && interrupted_by_ == 0) {
    interrupted_by_ = signal;
    ctx.request_stop(std::string("interrupted by ") + signal_name(signal), StopWhen::Now);
  }
}

Trainer::StopVote Trainer::my_vote(bool requested) const {
  StopVote vote;
  vote.requested = requested ? 1.0 : 0.0;
  vote.sigint = interrupted_by_ == SIGINT ? 1.0 : 0.0;
  vote.sigterm = interrupted_by_ == SIGTERM ? 1.0 : 0.0;
  return vote;
}

bool Trainer::agree_on_stop(Context& ctx, const StopVote& all, StopWhen when) {
  if (interrupted_by_ == 0 && (all.sigint > 0 || all.sigterm > 0)) {
    interrupted_by_ = all.sigint > 0 ? SIGINT : SIGTERM;
    ctx.request_stop(std::string("interrupted by ") + signal_name(interrupted_by_) + " (on another process)", when);
  }
  if (all.requested > 0 && !(when == StopWhen::Now ? ctx.stop_now() : ctx.stop_requested())) {
    ctx.request_stop("stopped by another process", when);
  }
  return all.wants_stop();
}

void Trainer::run_train_epoch(Context& ctx, FitRun& run, Resume* resume) {
  const DataLoader& train = run.train;
  const Callbacks& callbacks = run.callbacks;
  const FitOptions& options = run.options;
  ctx.stage = Stage::Train;
  ctx.num_batches = train.num_batches();
  net_.train();
  reset_accumulators();
  int64_t first = 0;
  if (resume) {
    restore_accumulators(*resume);  // the sums of the batches trained before the interruption
    first = resume->info.next_batch;
  }
  ctx.batch_index = first;
  TORCHFIT_DISPATCH(callbacks, ctx, on_train_epoch_begin);

  const int64_t accumulate = options.accumulate();
  const int64_t every = options.state_every_steps();
  const auto batches = train.epoch(static_cast<uint64_t>(ctx.epoch - 1));
  bool window_skipped = false;  // data-parallel: a process skipped a batch of this step's window
  auto next = batches.begin_at(first);  // the loader's workers start here
  int64_t i = first;
  for (; next != batches.end(); ++i, ++next) {
    ctx.batch = *next;
    ctx.batch_index = i;
    ctx.batch_size = ctx.batch.size();
    ctx.skip_batch_ = false;
    TORCHFIT_DISPATCH(callbacks, ctx, on_train_batch_begin);

    bool stepped = false;
    bool agreed_stop = false;
    if (step_) {
      stepped = !ctx.skip_batch_ && run_step(ctx, callbacks);
    } else {
      if (!ctx.skip_batch_) {
        forward(ctx);
        TORCHFIT_DISPATCH(callbacks, ctx, on_before_backward);
      }
      if (!ctx.skip_batch_) {
        const auto loss = accumulate > 1 ? ctx.loss / static_cast<double>(accumulate) : ctx.loss;
        (scaler_ ? scaler_->scale(loss) : loss).backward();
        TORCHFIT_DISPATCH(callbacks, ctx, on_after_backward);
      }
      const bool boundary = (i + 1) % accumulate == 0 || next.last();
      if (comm_) {
        // One round of collectives per step: the gradients averaged, and with them whether any
        // process skipped a batch of the window (then every process drops the step) or wants to
        // stop (then every process stops after it).
        window_skipped = window_skipped || ctx.skip_batch_;
        if (boundary) {
          check_stop_signal(ctx);
          auto vote = my_vote(ctx.stop_now() && interrupted_by_ == 0);
          vote.skipped_window = window_skipped ? 1.0 : 0.0;
          const auto all = StopVote::from_flags(averager_->average(vote.to_flags()));
          if (all.skipped_window > 0) {
            compat::zero_grad(*optimizer_);
          } else {
            optimizer_step(ctx, callbacks, options);
            stepped = true;
          }
          window_skipped = false;
          agreed_stop = agree_on_stop(ctx, all, StopWhen::Now);
        }
      }
      if (ctx.skip_batch_) {
        compat::zero_grad(*optimizer_);  // this batch's gradients, and the window's, are dropped
      } else {
        if (!comm_ && boundary) {
          optimizer_step(ctx, callbacks, options);
          stepped = true;
        }
        torch::NoGradGuard no_grad;
        loss_sum_.add_(ctx.loss.detach(), ctx.batch_size);
        for (size_t k = 0; k < output_loss_sums_.size(); ++k) {
          output_loss_sums_[k].add_(batch_losses_[k].detach(), ctx.batch_size);
        }
        update_metrics(ctx, true);
        sample_count_ += ctx.batch_size;
      }
    }
    TORCHFIT_DISPATCH(callbacks, ctx, on_train_batch_end);
    release_batch(ctx);
    if (!comm_) check_stop_signal(ctx);
    // Data-parallel: a stop takes effect at a step every process agreed on.
    if (ctx.stop_now() && (!comm_ || agreed_stop)) {
      if (run.saver.enabled()) {
        // Each process's running sums are its own: a data-parallel state keeps none of them.
        // A stop that is not a signal (a callback's) ends the run.
        run.saver.save(serialize_state(ctx, run, {{ctx.epoch, i + 1, false}, !comm_, interrupted_by_ == 0}, ctx.logs));
      }
      break;
    }
    if (stepped && every > 0 && ctx.global_step % every == 0 && run.saver.enabled()) {
      run.saver.save(serialize_state(ctx, run, {{ctx.epoch, i + 1, false}, !comm_, false}, ctx.logs));
    }
  }
  ctx.skip_batch_ = false;
  if (ctx.stop_now()) {
    return;
  }
  ctx.num_batches = i;  // a stream's length is known now
  write_epoch_logs(ctx.logs, "train_");
  TORCHFIT_DISPATCH(callbacks, ctx, on_train_epoch_end);
}

void Trainer::run_validation(Context& ctx, const DataLoader& data, const Callbacks& callbacks, const char* prefix) {
  ctx.stage = Stage::Validate;
  ctx.num_batches = data.num_batches();
  net_.eval();
  torch::NoGradGuard no_grad;
  reset_accumulators();
  TORCHFIT_DISPATCH(callbacks, ctx, on_validation_begin);
  int64_t i = 0;
  for (const Batch& batch : data.epoch(0)) {
    ctx.batch_index = i++;
    ctx.batch_size = batch.size();
    ctx.batch = batch;
    TORCHFIT_DISPATCH(callbacks, ctx, on_validation_batch_begin);
    if (step_) {
      StepValues values;
      {
        AutocastGuard autocast(precision_, device_);
        values = step_->validation_step(ctx);
      }
      if (!values.empty()) add_step_values(values, ctx.batch_size, "validation_step");
      if (!metrics_.empty() && !ctx.outputs.empty()) update_metrics(ctx, false);
      if (!values.empty() || (!metrics_.empty() && !ctx.outputs.empty())) sample_count_ += ctx.batch_size;
    } else {
      forward(ctx);
      loss_sum_.add_(ctx.loss, ctx.batch_size);
      for (size_t k = 0; k < output_loss_sums_.size(); ++k) output_loss_sums_[k].add_(batch_losses_[k], ctx.batch_size);
      update_metrics(ctx, false);
      sample_count_ += ctx.batch_size;
    }
    TORCHFIT_DISPATCH(callbacks, ctx, on_validation_batch_end);
    release_batch(ctx);
    // Inside fit only (evaluate() runs to the end). Data-parallel runs validate to the end
    // everywhere and agree on stopping at the epoch's end.
    if (!comm_) {
      if (ctx.stage == Stage::Validate && ctx.epoch > 0) {
        check_stop_signal(ctx);
      }
      if (ctx.stop_now()) {
        break;
      }
    }
  }
  if (!ctx.stop_now()) ctx.num_batches = i;  // a stream's length is known now
  // A custom step that scores nothing in validation logs nothing (no NaN columns).
  if (!(step_ && sample_count_ == 0)) write_epoch_logs(ctx.logs, prefix);
  TORCHFIT_DISPATCH(callbacks, ctx, on_validation_end);
}

namespace {
// The communicator of a data-parallel fit (more than one process), else null.
std::shared_ptr<Communicator> data_parallel(const FitOptions& options) {
  const auto& comm = options.communicator();
  return comm && comm->world_size() > 1 ? comm : nullptr;
}

// One learning-rate schedule per fit, run first in every hook: the rate it sets is the one
// every other callback (lr_monitor, nan_guard, unfreeze) sees, wherever it was listed.
void order_schedules(Callbacks& callbacks) {
  std::stable_partition(callbacks.begin(), callbacks.end(),
                        [](const auto& cb) { return dynamic_cast<const Schedule*>(cb.get()) != nullptr; });
  if (callbacks.size() > 1 && dynamic_cast<const Schedule*>(callbacks[1].get())) {
    throw ConfigError("two learning-rate schedules in one fit, '" + callbacks[0]->name() + "' and '" +
                      callbacks[1]->name() + "': each sets the optimizer's rate, so one would undo the other. Keep "
                      "one (cosine_lr has its own warm-up: --cosine_lr.warmup N)");
  }
}
}  // namespace

Trainer::FitRun::FitRun(Trainer& trainer, const FitOptions& options, const DataLoader& train_in,
                        const DataLoader& val_in)
    : settings{trainer},
      options(options),
      rank(data_parallel(options) ? data_parallel(options)->rank() : 0),
      world(data_parallel(options) ? data_parallel(options)->world_size() : 1),
      has_val(static_cast<bool>(val_in)),
      saver(rank == 0 ? options.state_path() : std::filesystem::path()) {
  Trainer& t = trainer;
  t.comm_ = data_parallel(options);
  t.precision_ = options.precision();
  { AutocastGuard check(t.precision_, t.device_); }  // refuses 16-mixed on a CPU before anything runs
  t.scaler_ = options.grad_scaler();
  if (!t.scaler_ && t.precision_ == Precision::FP16Mixed) t.scaler_ = std::make_shared<GradScaler>();
  // Data-parallel: this process's shard of the data; the callbacks that only report or write
  // files run on rank 0 alone.
  if (t.schedule_) callbacks.push_back(t.schedule_);
  for (const auto& cb : options.callbacks()) {
    if (rank == 0 || !cb->rank_zero_only()) callbacks.push_back(cb);
  }
  order_schedules(callbacks);
  train = train_in.to(t.device_);
  val = has_val ? val_in.to(t.device_) : DataLoader();
  if (t.comm_) {
    train = train.shard(rank, world, true);
    if (has_val) val = val.shard(rank, world, false);
  }
  // Read and check the state file before anything changes: a bad one leaves the trainer as it was.
  if (!options.resume_from().empty()) resume = t.open_state(options, callbacks, train);
}

Trainer::FitRun::Settings::~Settings() {
  trainer.comm_.reset();
  trainer.averager_.reset();
  trainer.scaler_.reset();
  trainer.precision_ = Precision::Float32;
}

History Trainer::fit(const DataLoader& train, const FitOptions& options) {
  return fit(train, DataLoader(), options);
}

namespace {
// What fit() refuses before anything runs: options out of range, data without what the step needs.
void check_fit(const FitOptions& options, bool custom_step, const DataLoader& train_in, const DataLoader& val_in) {
  if (options.epochs() < 1) {
    throw ConfigError("epochs must be at least 1, got " + std::to_string(options.epochs()));
  }
  if (options.accumulate() < 1) {
    throw ConfigError("gradient accumulation steps must be at least 1, got " + std::to_string(options.accumulate()));
  }
  if (!(options.clip_grad_norm() >= 0) || !std::isfinite(options.clip_grad_norm())) {
    throw ConfigError("the gradient clipping norm must be a finite positive number (or 0 for none), got " +
                      format_value(options.clip_grad_norm()));
  }
  if (!(options.clip_grad_value() >= 0) || !std::isfinite(options.clip_grad_value())) {
    throw ConfigError("the gradient clipping value must be a finite positive number (or 0 for none), got " +
                      format_value(options.clip_grad_value()));
  }
  if (options.state_every_steps() < 0) {
    throw ConfigError("state_every_steps must be 0 (epoch ends only) or positive, got " +
                      std::to_string(options.state_every_steps()));
  }
  if (!train_in) {
    throw DataError("the training data is empty");
  }
  // The default step compares outputs with targets; a custom step decides what it needs.
  if (!custom_step) {
    const Sample first = train_in.first_sample();
    if (!first.has_targets()) {
      throw DataError("the training data has no targets (" + train_in.data_name() + ": " + first.describe() + ")");
    }
  }
  if (val_in && !custom_step && !val_in.first_sample().has_targets()) {
    throw DataError("the validation data has no targets (" + val_in.data_name() + ")");
  }
  if (custom_step && options.accumulate() > 1) {
    throw ConfigError("gradient accumulation is for the default step; a custom step decides when it calls ctx.step()");
  }
  if (custom_step && options.communicator() && options.communicator()->world_size() > 1) {
    throw ConfigError("a custom step does not train data-parallel yet; run it in one process");
  }
  for (const auto& cb : options.callbacks()) {
    if (!cb) throw ConfigError("a null callback was given to fit()");
  }
}
}  // namespace

History Trainer::fit(const DataLoader& train_in, const DataLoader& val_in, const FitOptions& options) {
  check_fit(options, static_cast<bool>(step_), train_in, val_in);
  if (options.seed()) {
    seed_everything(*options.seed());
  }
  if (options.device()) {
    to(*options.device());
  }
  FitRun run(*this, options, train_in, val_in);
  const Callbacks& callbacks = run.callbacks;
  std::unique_ptr<Resume>& resume = run.resume;

  history_.clear();
  history_.set_stop_reason("");
  interrupted_by_ = 0;
  Context ctx(*this);
  ctx.callbacks_ = &callbacks;
  ctx.options_ = &options;
  ctx.epochs = options.epochs();
  ctx.rank = run.rank;
  ctx.world_size = run.world;

  guarded(callbacks, ctx, [&] {
    check_monitored_keys(ctx, run);
    logger("trainer")->info("<<<<<< {} is used >>>>>>", device_.is_cuda() ? "cuda" : device_.str());
    compat::zero_grad(*optimizer_);
    if (options.preflight() && !resume && !step_) preflight(ctx, run);
    int64_t first_epoch = 1;
    if (resume) {
      restore_state(*resume, ctx);
      first_epoch = resume->info.next_epoch;
    }
    if (comm_) {
      // Every process starts from rank 0's weights (and buffers).
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> tensors = net_.parameters();
      for (const auto& b : net_.module().buffers()) tensors.push_back(b);
      comm_->broadcast(tensors, 0);
      averager_ = std::make_unique<GradientAverager>(comm_, net_.parameters());
    }
    TORCHFIT_DISPATCH(callbacks, ctx, on_fit_begin);
    if (resume) {
      restore_callbacks(*resume, callbacks);
      if (resume->info.stopped || first_epoch > options.epochs()) {
        // Nothing left to train: the run stopped early, or already reached this epoch limit.
        const std::string reason = resume->info.stopped ? resume->info.stop_reason
                                                        : "completed " + std::to_string(first_epoch - 1) + " epochs";
        logger("trainer")->info("the run in {} already ended ({}); nothing to train", options.resume_from().string(),
                                reason);
        history_.set_stop_reason(reason);
        TORCHFIT_DISPATCH(callbacks, ctx, on_fit_end);
        return;
      }
    }
    for (int64_t epoch = first_epoch; epoch <= options.epochs() && !ctx.stop_requested(); ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      ctx.epoch = epoch;
      // A resume inside this epoch: ctx.logs already holds what the epoch logged so far.
      Resume* continuing = resume && epoch == first_epoch && (resume->info.next_batch > 0 || resume->info.validating)
                               ? resume.get()
                               : nullptr;
      if (!continuing) {
        ctx.logs.clear();
        ctx.logs.set("epoch", static_cast<double>(epoch));
      }
      TORCHFIT_DISPATCH(callbacks, ctx, on_epoch_begin);
      if (!(continuing && continuing->info.validating)) {
        run_train_epoch(ctx, run, continuing);
        if (ctx.stop_now()) {
          break;  // the epoch is incomplete: no row for it (its state is saved)
        }
      }
      if (run.has_val) {
        const Logs train_logs = ctx.logs;
        run_validation(ctx, run.val, callbacks, "val_");
        if (ctx.stop_now() && !comm_) {
          if (run.saver.enabled()) {
            // Training of this epoch is done: a resume runs its validation again.
            run.saver.save(serialize_state(ctx, run, {{epoch, ctx.num_batches, true}, false, interrupted_by_ == 0},
                                           train_logs));
          }
          break;
        }
      }
      ctx.stage = Stage::Fit;
      ctx.logs.set("time", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      try {
        TORCHFIT_DISPATCH(callbacks, ctx, on_epoch_end);
      } catch (...) {
        // The epoch ran to its end, and callbacks before the failing one may have saved it
        // (model_checkpoint): its row is kept, so the history agrees with what they saved.
        history_.append(ctx.logs);
        throw;
      }
      history_.append(ctx.logs);
      bool stopped = ctx.stop_requested();  // by a callback (early stopping): the run is over
      check_stop_signal(ctx);
      if (comm_) {
        auto summed = torch::tensor(my_vote(stopped).to_flags(), torch::kDouble);
        comm_->all_reduce_sum(summed);
        const auto all = StopVote::from_flags(
            std::vector<double>(summed.data_ptr<double>(), summed.data_ptr<double>() + summed.numel()));
        agree_on_stop(ctx, all, StopWhen::EpochEnd);
        stopped = all.requested > 0;
      }
      if (run.saver.enabled()) {
        run.saver.save(serialize_state(ctx, run, {{epoch + 1, 0, false}, false, stopped}, ctx.logs));
      }
    }
    ctx.stage = Stage::Fit;
    history_.set_stop_reason(ctx.stop_requested() ? ctx.stop_reason()
                                                  : "completed " + std::to_string(options.epochs()) + " epochs");
    run.saver.wait();  // the last state is on disk (or its error raised) before the fit ends
    TORCHFIT_DISPATCH(callbacks, ctx, on_fit_end);
  });
  return history_;
}

Logs Trainer::evaluate(const DataLoader& data_in, const Callbacks& callbacks) {
  if (!data_in) {
    throw DataError("the data to evaluate on is empty");
  }
  if (!step_ && !data_in.first_sample().has_targets()) {
    throw DataError("the data to evaluate on has no targets");
  }
  const DataLoader data = data_in.to(device_);
  Context ctx(*this);
  guarded(callbacks, ctx, [&] { run_validation(ctx, data, callbacks, "val_"); });
  return ctx.logs;
}

Outputs Trainer::predict_outputs(const DataLoader& data_in, const Callbacks& callbacks) {
  if (!data_in) {
    throw DataError("the data to predict on is empty");
  }
  const DataLoader data = data_in.to(device_);
  Context ctx(*this);
  std::vector<Outputs> parts;
  parts.reserve(static_cast<size_t>(std::max<int64_t>(0, data.num_batches())));
  guarded(callbacks, ctx, [&] {
    ctx.stage = Stage::Predict;
    ctx.num_batches = data.num_batches();
    net_.eval();
    torch::NoGradGuard no_grad;
    TORCHFIT_DISPATCH(callbacks, ctx, on_predict_begin);
    int64_t i = 0;
    for (const Batch& batch : data.epoch(0)) {
      ctx.batch_index = i++;
      ctx.batch_size = batch.size();
      ctx.batch = batch;
      TORCHFIT_DISPATCH(callbacks, ctx, on_predict_batch_begin);
      if (step_) {
        ctx.outputs = step_->predict_step(ctx);
      } else {
        ctx.outputs = net_.forward(ctx.batch);
      }
      if (ctx.outputs.empty()) throw ConfigError("predict_step returned no outputs for batch " + std::to_string(ctx.batch_index));
      parts.push_back(ctx.outputs);
      TORCHFIT_DISPATCH(callbacks, ctx, on_predict_batch_end);
      release_batch(ctx);
    }
    TORCHFIT_DISPATCH(callbacks, ctx, on_predict_end);
  });
  Outputs all;
  std::vector<torch::Tensor> column(parts.size());
  for (size_t o = 0; o < parts.front().count(); ++o) {
    for (size_t b = 0; b < parts.size(); ++b) column[b] = parts[b][parts.front().name(o)];
    all.add(parts.front().name(o), torch::cat(column, 0), Role::Output);
  }
  return all;
}

torch::Tensor Trainer::predict(const DataLoader& data, const Callbacks& callbacks) {
  auto all = predict_outputs(data, callbacks);
  if (all.count() != 1) {
    throw DataError("predict() gives one tensor, but the net has " + std::to_string(all.count()) + " outputs (" +
                    all.describe() + "); use predict_outputs()");
  }
  return all[size_t{0}];
}

torch::Tensor Trainer::predict(const torch::Tensor& features, int64_t batch_size) {
  return predict(DataLoader(TensorDataset(features), LoaderOptions(batch_size)));
}

}  // namespace torchfit
