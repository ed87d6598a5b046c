// Step: a training step of your own (a GAN, several optimizers, a loss that needs other batch fields), Lightning's training_step.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

class Context;

/// Named scalar values a step logs for its batch: {"loss", l}, {"d_loss", d}, ... Each becomes
/// a history column (train_<name>, val_<name>), averaged exactly over the epoch's samples.
using StepValues = std::vector<std::pair<std::string, torch::Tensor>>;

/// What one batch does when forward - loss - backward - step does not fit (Lightning's
/// training_step with manual optimization, torchkeras' StepRunner). Give it to the Trainer in
/// place of a loss: `Trainer(net, std::make_shared<MyStep>(...), metrics, main_optimizer)`.
///
/// In train_step, call ctx.backward(loss) for each backward pass (on_before_backward and
/// on_after_backward run around it, mixed precision scales it) and ctx.step(optimizer) for each
/// optimizer step (its gradients unscaled and clipped as FitOptions says, on_before_optimizer_step,
/// then the step and zero_grad). Set ctx.outputs to what the net predicted when the trainer's
/// metrics should see it. The trainer counts one global step per batch (a per-step schedule
/// counts it too); schedules and lr_monitor act on the trainer's optimizer.
class TORCHFIT_EXPORT Step {
 public:
  virtual ~Step() = default;
  /// Trains on ctx.batch (the net in train mode, gradients on). Must return a "loss" value
  /// (logged as train_loss; early stopping and checkpoints can monitor it) and may return more.
  virtual StepValues train_step(Context& ctx) = 0;
  /// Scores ctx.batch for validation (eval mode, no gradients): its values are logged as
  /// val_<name>, "loss" first. By default nothing: the validation hooks run, no val_ columns.
  virtual StepValues validation_step(Context& ctx) { return {}; }
  /// What predict() returns for ctx.batch (eval mode, no gradients): by default the net's
  /// outputs for the batch's inputs; a GAN's generator might sample from a latent batch here.
  virtual Outputs predict_step(Context& ctx);
  /// The optimizers this step steps, by name: every one is saved in the state file and restored
  /// on a resume (the trainer's own optimizer is saved anyway; listing it too is fine).
  virtual std::vector<std::pair<std::string, std::shared_ptr<torch::optim::Optimizer>>> optimizers() { return {}; }
  /// Whatever else the step keeps between batches (counters, running averages, the state of a
  /// scheduler it steps itself), for a resume.
  virtual void state_dict(torch::serialize::OutputArchive& archive) const {}
  virtual void load_state_dict(torch::serialize::InputArchive& archive) {}
};

}  // namespace torchfit
