// Trainer: torchkeras' KerasModel in C++ — fit, evaluate and predict with lifecycle hooks.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "torchfit/callback.hpp"
#include "torchfit/data.hpp"
#include "torchfit/distributed.hpp"
#include "torchfit/export.hpp"
#include "torchfit/history.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/metric.hpp"
#include "torchfit/net.hpp"
#include "torchfit/precision.hpp"
#include "torchfit/scheduler.hpp"
#include "torchfit/step.hpp"

namespace torchfit {

using Callbacks = std::vector<std::shared_ptr<Callback>>;

struct TORCHFIT_EXPORT FitOptions {
  /// Train until this epoch (counted from 1).
  TORCH_ARG(int64_t, epochs) = 10;
  /// Take an optimizer step every `accumulate` batches (gradient accumulation; the loss is
  /// divided by it so the step sees the mean gradient).
  TORCH_ARG(int64_t, accumulate) = 1;
  /// Clip the gradients' global L2 norm to this before each step; 0 turns clipping off.
  TORCH_ARG(double, clip_grad_norm) = 0.0;
  /// Clamp every gradient element to [-v, v] before each step (after norm clipping); 0: off.
  TORCH_ARG(double, clip_grad_value) = 0.0;
  /// Where to train; unset, the trainer's device (CUDA when available, else CPU).
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  /// Hooks for this fit, run in this order.
  TORCH_ARG(Callbacks, callbacks) = {};
  /// Seeds every generator (seed_everything) before training, for a repeatable run.
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;

  /// Where to save the full training state (see state.hpp): at the end of every epoch, every
  /// `state_every_steps` optimizer steps, when a stop signal arrives and when the fit ends.
  /// Each save is atomic and runs in the background. Empty: never saved.
  TORCH_ARG(std::filesystem::path, state_path) = {};
  /// Also save the state every this many optimizer steps (0: at epoch ends only).
  TORCH_ARG(int64_t, state_every_steps) = 0;
  /// Continue the run saved in this state file: the same history rows and the same final
  /// weights as a run never interrupted (bit for bit on CPU), given the same net, data,
  /// optimizer, callbacks and options. Empty: start from scratch.
  TORCH_ARG(std::filesystem::path, resume_from) = {};
  /// Free text kept in the state file (the runner's resolved settings), for read_state_info.
  TORCH_ARG(std::string, run_config) = "";
  /// Data-parallel training (see distributed.hpp): every process runs fit() with the same net,
  /// data, options and callbacks, and a communicator from connect(). Rank 0's weights are
  /// broadcast first; each process trains on its shard of every epoch (DataLoader::shard), the
  /// gradients are averaged before each optimizer step, losses and metrics are reduced exactly,
  /// rank_zero_only() callbacks and the state file act on rank 0 alone, and a stop (early
  /// stopping, a signal, the NaN guard) on any process stops all at the same step. Null or a
  /// world of one: a single process.
  TORCH_ARG(std::shared_ptr<Communicator>, communicator) = nullptr;
  /// Mixed precision (precision.hpp): bf16-mixed and 16-mixed run forward and loss under
  /// autocast (training and validation); the weights, the optimizer and the metrics' sums stay
  /// in float32 (double for sums).
  TORCH_ARG(Precision, precision) = Precision::Float32;
  /// Loss scaling: made for 16-mixed when not given; give one to scale the loss in any
  /// precision. Its scale is part of the training state.
  TORCH_ARG(std::shared_ptr<GradScaler>, grad_scaler) = nullptr;
  /// Before epoch 1, one batch of the training data through forward, the loss, backward and
  /// the metrics, one batch of the validation data through forward, the loss and the metrics,
  /// and the training state serialized (every callback's state_dict), on the real net: then
  /// its weights, buffers, gradients and random generators are put back, so the run is the
  /// same bit for bit. A mistake that would surface only after a whole training epoch (a
  /// metric that cannot take the validation output, a callback state that cannot be saved) is
  /// raised before any training. Not on a resume, nor with a custom step (whose step may move
  /// its own optimizers). See docs/reliability.md.
  TORCH_ARG(bool, preflight) = true;
};

class TORCHFIT_EXPORT Trainer {
 public:
  /// `net`: any module (see Net: one or several inputs and outputs). `loss`: a LibTorch loss
  /// module or any callable (preds, targets) -> scalar, for a net of one output and a batch of
  /// one target. `metrics`: named metrics, logged as train_<name> and val_<name>. `optimizer`:
  /// Adam with lr 3e-4 over the net's parameters when null. `schedule`: a learning-rate
  /// schedule (scheduler.hpp), run as the first callback of every fit; the same as giving it
  /// in FitOptions::callbacks().
  Trainer(Net net, Loss loss, Metrics metrics = {}, std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr,
          std::shared_ptr<Schedule> schedule = nullptr);
  /// A net of several outputs: one loss per output (`{{"cls", CrossEntropyLoss()}, {"reg",
  /// MSELoss(), 0.5}}`), each logged as <output>_loss, their weighted sum as loss. A metric
  /// measures the output its name begins with: "cls_acc" the output "cls" (for_output() names
  /// them so), logged as train_cls_acc and val_cls_acc.
  Trainer(Net net, Losses losses, Metrics metrics = {}, std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr,
          std::shared_ptr<Schedule> schedule = nullptr);
  /// A training step of your own (step.hpp: a GAN, several optimizers, a loss over several
  /// fields) in place of a loss. `optimizer` is the one schedules and lr_monitor act on; null:
  /// the step's first. Metrics see what the step puts in ctx.outputs.
  Trainer(Net net, std::shared_ptr<Step> step, Metrics metrics = {},
          std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr, std::shared_ptr<Schedule> schedule = nullptr);

  /// Trains for options.epochs(), validating on `val` after each epoch. Returns the history
  /// (also kept in history()), whose stop_reason() says why training ended.
  History fit(const DataLoader& train, const DataLoader& val, const FitOptions& options = {});
  /// Trains without validation.
  History fit(const DataLoader& train, const FitOptions& options = {});

  /// Loss and metrics over `data`: {val_loss, val_<metric>...}. Runs the validation hooks.
  Logs evaluate(const DataLoader& data, const Callbacks& callbacks = {});
  /// The net's outputs for every sample of `data`, stacked in order (eval mode, no grad), on
  /// the trainer's device(): call .cpu() on them to read them on the host. A net of several
  /// outputs: predict_outputs().
  torch::Tensor predict(const DataLoader& data, const Callbacks& callbacks = {});
  /// Every output of the net for every sample of `data`, each concatenated in order.
  Outputs predict_outputs(const DataLoader& data, const Callbacks& callbacks = {});
  /// The net's outputs for `features`, in batches of `batch_size`, on device().
  torch::Tensor predict(const torch::Tensor& features, int64_t batch_size = 1024);

  Net& net() { return net_; }
  /// The loss (the first one, for a net of several outputs; an empty one with a custom step).
  const Loss& loss() const;
  /// The custom step, or nullptr.
  Step* step() const { return step_.get(); }
  const Losses& losses() const { return losses_; }
  const Metrics& metrics() const { return metrics_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  /// The schedule given to the constructor, or nullptr.
  Schedule* schedule() const { return schedule_.get(); }
  torch::Device device() const { return device_; }
  /// Moves the net (and with it the optimizer's parameters) to `device`.
  void to(torch::Device device);
  /// The history of the last fit.
  const History& history() const { return history_; }
  /// The signal (SIGINT, SIGTERM) that stopped the last fit, or 0. See signals.hpp.
  int interrupted_by() const { return interrupted_by_; }
  /// Whether a larger value of a logged key (val_acc, train_loss, ...) is better, from the
  /// metric behind it; nothing for keys the trainer does not know.
  std::optional<bool> higher_is_better(const std::string& key) const;

 private:
  friend class Context;
  struct Resume;
  class StateSaver;
  struct FitRun;
  /// Where a resume continues.
  struct Position {
    int64_t next_epoch;
    int64_t next_batch;
    bool validating;
  };
  /// What a state file records besides the trainer: where the run continues, whether it is
  /// over, and whether the running sums of an epoch cut short go in (not data-parallel: each
  /// process's are its own).
  struct SavePoint {
    Position position;
    bool with_running_sums;
    bool stopped;
  };
  /// Data-parallel: what a process wants at a step or an epoch's end, summed over the
  /// processes in one all-reduce (so each field counts the processes that want it).
  struct StopVote {
    double requested = 0;       // a callback asked to stop
    double sigint = 0;          // Ctrl-C
    double sigterm = 0;         // SIGTERM
    double skipped_window = 0;  // a batch of this step's accumulation window was skipped
    std::vector<double> to_flags() const { return {requested, sigint, sigterm, skipped_window}; }
    static StopVote from_flags(const std::vector<double>& f) { return {f.at(0), f.at(1), f.at(2), f.at(3)}; }
    bool wants_stop() const { return requested > 0 || sigint > 0 || sigterm > 0; }
  };

  // One epoch of training; `resume` when it continues a state saved inside this epoch.
  void run_train_epoch(Context& ctx, FitRun& run, Resume* resume);
  void run_validation(Context& ctx, const DataLoader& data, const Callbacks& callbacks, const char* prefix);
  void optimizer_step(Context& ctx, const Callbacks& callbacks, const FitOptions& options);
  // Unscales, clips and steps `optimizer` with its hook, then zero_grad. False: skipped (inf/NaN
  // gradients under loss scaling; found_inf_ set).
  bool step_optimizer(Context& ctx, torch::optim::Optimizer& optimizer, const Callbacks& callbacks,
                      const FitOptions& options, bool update_scale);
  // A custom step: one training batch, and what its hooks (ctx.backward, ctx.step) do.
  bool run_step(Context& ctx, const Callbacks& callbacks);
  void step_backward(Context& ctx, const torch::Tensor& loss);
  void step_optimizer_from_step(Context& ctx, torch::optim::Optimizer& optimizer);
  // Adds a step's values to the running sums; `who` names the step function in messages.
  void add_step_values(const StepValues& values, int64_t batch_size, const char* who);
  // The net's outputs and the loss for ctx.batch (under autocast when mixed precision is on).
  void forward(Context& ctx);
  // FitOptions::preflight: one batch each way, then everything put back.
  void preflight(Context& ctx, FitRun& run);
  void reset_accumulators();
  // The total loss of ctx.outputs against ctx.batch's targets; per-output values in batch_losses_.
  torch::Tensor compute_loss(const Context& ctx);
  // Adds the batch to every metric: each gets its output and target.
  void update_metrics(const Context& ctx, bool detach);
  // The output and the target field a loss entry (or metric bound to `output`) pairs.
  std::pair<size_t, size_t> pair_for(const Context& ctx, const std::string& output, const std::string& target,
                                     const std::string& what) const;
  void write_epoch_logs(Logs& logs, const char* prefix);
  Logs running_logs() const;
  // Every key a callback monitors is one an epoch will log (else a ConfigError listing those),
  // and every monitor knows which way is better.
  void check_monitored_keys(const Context& ctx, const FitRun& run) const;
  void check_logged_keys(const Context& ctx, const FitRun& run) const;
  void check_stop_signal(Context& ctx);
  // Data-parallel: this process's vote, and the decision from every process's votes summed.
  // Returns whether any process wants to stop.
  StopVote my_vote(bool requested) const;
  bool agree_on_stop(Context& ctx, const StopVote& all, StopWhen when);

  // State files (state.cpp).
  std::string serialize_state(const Context& ctx, const FitRun& run, const SavePoint& point, const Logs& logs);
  std::unique_ptr<Resume> open_state(const FitOptions& options, const Callbacks& callbacks,
                                     const DataLoader& train) const;
  void restore_state(Resume& resume, Context& ctx);
  void restore_callbacks(Resume& resume, const Callbacks& callbacks);
  void restore_accumulators(Resume& resume);
  std::vector<std::string> loss_outputs() const;

  Net net_;
  Losses losses_;
  bool per_output_ = false;            // losses are named per output (else one loss, one output)
  // What each metric measures: an output ("": the only one), its target field ("": the one
  // named like the output, or the only one), and how messages name the metric.
  struct MetricBinding {
    std::string output, target, label;
  };
  std::vector<MetricBinding> metric_bindings_;
  std::shared_ptr<Step> step_;
  bool found_inf_ = false;     // a custom step's optimizer step met inf/NaN gradients this batch
  bool step_stepped_ = false;  // a custom step stepped an optimizer this batch
  Metrics metrics_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<Schedule> schedule_;
  torch::Device device_;
  History history_;

  // Running sums of the current loop, kept on the device: no host sync per batch.
  torch::Tensor loss_sum_;
  std::vector<torch::Tensor> output_loss_sums_;  // per-output losses, summed like loss_sum_
  std::vector<torch::Tensor> batch_losses_;      // this batch's per-output losses
  std::vector<std::pair<std::string, torch::Tensor>> step_sums_;  // a custom step's values other than loss
  int64_t sample_count_ = 0;
  int interrupted_by_ = 0;
  bool warned_metric_state_ = false;

  // Mixed precision and data-parallel training, for the current fit only (set and put back by FitRun).
  Precision precision_ = Precision::Float32;
  std::shared_ptr<GradScaler> scaler_;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<GradientAverager> averager_;
  bool warned_metric_sync_ = false;
};

}  // namespace torchfit
