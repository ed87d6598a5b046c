// Callback: the trainer's lifecycle hooks, and the Context every hook receives.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/export.hpp"
#include "torchfit/history.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/net.hpp"
#include "torchfit/state_fields.hpp"

namespace torchfit {

class Trainer;
class Callback;
class Monitor;
struct FitOptions;

/// Which loop is running.
enum class Stage { Fit, Train, Validate, Predict };

/// How soon a stop request takes effect.
enum class StopWhen {
  EpochEnd,  ///< finish the current epoch (validation included), then stop
  Now,       ///< stop after the current batch
};

/// Everything a hook can see and do. One Context lives for a whole fit/evaluate/predict call;
/// the trainer updates its fields in place (no allocation per batch).
class TORCHFIT_EXPORT Context {
 public:
  explicit Context(Trainer& trainer) : trainer_(&trainer) {}

  // Where the loop is. Epochs count from 1, like the history's epoch column.
  Stage stage = Stage::Fit;
  int64_t epoch = 0;        ///< current epoch (1-based); 0 outside fit
  int64_t epochs = 0;       ///< last epoch of this fit
  int64_t global_step = 0;  ///< optimizer steps taken so far in this fit
  int64_t batch_index = 0;  ///< 0-based batch in the current loop (in on_train_epoch_begin: the first to train)
  int64_t batch_size = 0;   ///< samples in the current batch
  /// Batches in the current loop; -1 while a stream of unknown length is read (its count once
  /// the loop ended, from on_train_epoch_end / on_validation_end on).
  int64_t num_batches = 0;
  /// True when this fit continues a run saved in a state file (FitOptions::resume_from).
  /// On a resume on_fit_begin runs first, then every callback's load_state_dict; an epoch
  /// that was cut short starts again at on_epoch_begin, its first batch being the first not
  /// yet trained.
  bool resumed = false;
  /// Data-parallel training: this process's rank and the number of processes (0 and 1 alone).
  int rank = 0;
  int world_size = 1;

  /// The epoch's logs so far: train_loss, train_<m>, then lr (from lr_monitor), val_loss, val_<m>.
  /// Callbacks may add values; they become history columns.
  Logs logs;

  // The current batch, valid inside batch hooks only (empty elsewhere).
  /// The batch's fields by name or position: `ctx.batch.input()` and `ctx.batch.target()` for
  /// the classic pair, `ctx.batch["image"]` for a named one. In on_train_batch_begin a callback
  /// may replace a field's tensor (the batch is the loader's copy, never the dataset's storage).
  Batch batch;
  /// What the net returned for it (after forward): `ctx.outputs[0]` for a net of one output.
  Outputs outputs;
  torch::Tensor loss;  ///< this batch's mean loss, still attached to the graph in training

  Trainer& trainer() const { return *trainer_; }
  Net& net() const;
  torch::optim::Optimizer& optimizer() const;
  torch::Device device() const;
  const History& history() const;

  /// The running loss and metrics of the current loop so far ("loss", "acc", ...). Costs
  /// one host sync per value: call it when a value is shown, not on every batch.
  Logs running_logs() const;
  /// Whether a larger value of `key` ("val_acc", "train_loss", ...) is better, from the
  /// metric that logs it; nothing for keys the trainer does not know.
  std::optional<bool> higher_is_better(const std::string& key) const;

  /// Asks the trainer to stop: at the end of this epoch, or right after this batch.
  void request_stop(std::string reason, StopWhen when = StopWhen::EpochEnd);
  bool stop_requested() const { return stop_requested_; }

  /// Discards the current training batch: no forward/backward from then on, no optimizer
  /// step (the gradients gathered since the last step are dropped), and the batch counts in
  /// neither the loss nor the metrics. Call it from on_train_batch_begin, on_before_backward
  /// or on_after_backward (nan_guard's skip_batch policy does).
  void skip_batch() { skip_batch_ = true; }
  bool batch_skipped() const { return skip_batch_; }
  bool stop_now() const { return stop_requested_ && stop_when_ == StopWhen::Now; }
  const std::string& stop_reason() const { return stop_reason_; }

  /// In a custom Step's train_step: backward of `loss` (scaled under 16-mixed), with
  /// on_before_backward and on_after_backward around it; ctx.loss holds it for the hooks.
  /// Nothing happens once a hook called skip_batch().
  void backward(const torch::Tensor& loss);
  /// In a custom Step's train_step: one step of `optimizer`: its gradients unscaled (an
  /// inf/NaN one skips the step under 16-mixed) and clipped as the fit says, then
  /// on_before_optimizer_step, the step and zero_grad. After skip_batch(): only zero_grad.
  void step(torch::optim::Optimizer& optimizer);

 private:
  friend class Trainer;
  Trainer* trainer_;
  const std::vector<std::shared_ptr<Callback>>* callbacks_ = nullptr;  // of the running fit
  const FitOptions* options_ = nullptr;
  bool stop_requested_ = false;
  bool skip_batch_ = false;
  StopWhen stop_when_ = StopWhen::EpochEnd;
  std::string stop_reason_;
};

/// Every hook has an empty default: override only what you need. Hooks run in the order the
/// callbacks were given (the runner's --callbacks list), for every hook. Order within a fit:
///
///   on_fit_begin
///   for each epoch:
///     on_epoch_begin
///       on_train_epoch_begin
///         for each batch: on_train_batch_begin, forward + loss, on_before_backward, backward,
///                         on_after_backward, [on_before_optimizer_step, step], on_train_batch_end
///       on_train_epoch_end                      (logs hold train_loss, train_<m>)
///       on_validation_begin
///         for each batch: on_validation_batch_begin, on_validation_batch_end
///       on_validation_end                       (logs hold val_loss, val_<m>)
///     on_epoch_end                              (the row is added to the history after this)
///   on_fit_end                                  (also after a stop request)
///
/// evaluate() runs the validation hooks alone; predict() runs on_predict_*. When a hook
/// throws, on_exception runs on every callback, then the error propagates.
class TORCHFIT_EXPORT Callback {
 public:
  virtual ~Callback() = default;

  virtual void on_fit_begin(Context& ctx) {}
  virtual void on_fit_end(Context& ctx) {}
  virtual void on_epoch_begin(Context& ctx) {}
  virtual void on_epoch_end(Context& ctx) {}
  virtual void on_train_epoch_begin(Context& ctx) {}
  virtual void on_train_epoch_end(Context& ctx) {}
  virtual void on_train_batch_begin(Context& ctx) {}
  virtual void on_train_batch_end(Context& ctx) {}
  virtual void on_before_backward(Context& ctx) {}
  virtual void on_after_backward(Context& ctx) {}
  virtual void on_before_optimizer_step(Context& ctx) {}
  virtual void on_validation_begin(Context& ctx) {}
  virtual void on_validation_end(Context& ctx) {}
  virtual void on_validation_batch_begin(Context& ctx) {}
  virtual void on_validation_batch_end(Context& ctx) {}
  virtual void on_predict_begin(Context& ctx) {}
  virtual void on_predict_end(Context& ctx) {}
  virtual void on_predict_batch_begin(Context& ctx) {}
  virtual void on_predict_batch_end(Context& ctx) {}
  /// Runs when a hook, the loss or the net throws; the error propagates afterwards.
  virtual void on_exception(Context& ctx, const std::exception& error) {}

  /// The fields this callback keeps across a resume (a wait count, a Monitor, base rates), each
  /// named once (state_fields.hpp). The default state_dict() and load_state_dict() save and read
  /// them; most callbacks override only this.
  virtual StateFields state_fields() { return {}; }
  /// Saves this callback's state so it survives a resume: by default its state_fields(). The
  /// trainer calls it whenever it saves its state file: finish any file writes still in flight
  /// first, so the state never refers to a file that is not complete on disk.
  virtual void state_dict(torch::serialize::OutputArchive& archive) const;
  virtual void load_state_dict(torch::serialize::InputArchive& archive);

  /// The Monitors this callback keeps (the best value of val_loss, val_acc, ...). Before epoch 1
  /// fit() checks that an epoch will log each key, so a mistyped key fails at once with the keys
  /// that will be logged (not at the end of epoch 1), and resolves each `auto` mode, so a key
  /// whose direction nothing knows fails too. A callback that tolerates a missing key (it skips
  /// the epoch) leaves its monitor out.
  virtual std::vector<const Monitor*> monitors() const { return {}; }
  /// Other logged values this callback reads without a best (a ratio of two losses): checked
  /// like the monitors' keys.
  virtual std::vector<std::string> monitored_keys() const { return {}; }
  /// The values this callback adds to the epoch's logs itself (lr_monitor's lr, lr_1, ...), so
  /// that other callbacks may monitor them. `ctx` gives the optimizer and the world size.
  virtual std::vector<std::string> logged_keys(const Context& ctx) const { return {}; }

  /// A file a callback wrote, for the list `torchfit train` prints when a run ends.
  struct OutputFile {
    std::string path;
    std::string what;  ///< a few words: "weights of epoch 57 (val_acc 0.928333)"
  };
  /// The files this callback wrote in the fit that exist now. The runner lists them with its
  /// own (history, settings, state) at the end of a run, without knowing the plugin.
  virtual std::vector<OutputFile> output_files() const { return {}; }

  /// Data-parallel training: true for a callback that only reports or writes files (progress,
  /// checkpoints, logs, plots), which then runs on rank 0 alone. Callbacks that change the
  /// training (LR schedules, early stopping, the NaN guard) keep the default and run on every
  /// process, where they see the same, reduced logs and so decide the same.
  virtual bool rank_zero_only() const { return false; }

  /// The name used in messages and checkpoints: the plugin name for plugins.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

 private:
  std::string name_ = "callback";
};

}  // namespace torchfit
