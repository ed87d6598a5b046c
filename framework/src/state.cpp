// State files: the trainer's full state, saved atomically in the background and read back
// with errors that say what does not match.
#include <c10/util/Type.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "torchfit/checkpoint.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"
#include "torchfit/log.hpp"
#include "envelope.hpp"
#include "trainer_state.hpp"

namespace torchfit {
namespace fs = std::filesystem;

namespace {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

const envelope::Kind kStateKind{"TORCHFIT-STATE\0\0", "state file",
                                "there is nothing to resume (start the run without resuming: no --resume, or no FitOptions::resume_from)"};

template <typename T>
c10::List<T> list_of(const std::vector<T>& values) {
  c10::List<T> list;
  for (const auto& v : values) list.push_back(v);
  return list;
}

void write_logs(OutputArchive& archive, const std::string& key, const Logs& logs) {
  c10::List<std::string> keys;
  c10::List<double> values;
  for (const auto& [k, v] : logs) {
    keys.push_back(k);
    values.push_back(v);
  }
  archive.write(key + "_keys", c10::IValue(keys));
  archive.write(key + "_values", c10::IValue(values));
}

// Reads a generic list: an empty typed list comes back from the archive untyped.
std::vector<c10::IValue> read_list(InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  if (!v.isList()) throw CheckpointError("'" + key + "' is not a list");
  const auto list = v.toList();
  return std::vector<c10::IValue>(list.begin(), list.end());
}

std::vector<std::string> read_strings(InputArchive& archive, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& v : read_list(archive, key)) out.push_back(v.toStringRef());
  return out;
}

Logs read_logs(InputArchive& archive, const std::string& key) {
  const auto keys = read_list(archive, key + "_keys");
  const auto values = read_list(archive, key + "_values");
  if (keys.size() != values.size()) throw CheckpointError("'" + key + "' has keys and values of different lengths");
  Logs logs;
  for (size_t i = 0; i < keys.size(); ++i) logs.set(keys[i].toStringRef(), values[i].toDouble());
  return logs;
}

void write_tensors(OutputArchive& archive, const std::string& key,
                   const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  OutputArchive sub;
  c10::List<std::string> names;
  int64_t i = 0;
  for (const auto& [name, tensor] : tensors) {
    names.push_back(name);
    sub.write("t" + std::to_string(i++), tensor.detach());
  }
  sub.write("names", c10::IValue(names));
  archive.write(key, sub);
}

std::map<std::string, torch::Tensor> read_tensors(InputArchive& archive, const std::string& key) {
  InputArchive sub;
  archive.read(key, sub);
  std::map<std::string, torch::Tensor> out;
  const auto names = read_strings(sub, "names");
  for (size_t i = 0; i < names.size(); ++i) {
    torch::Tensor t;
    sub.read("t" + std::to_string(i), t);
    out.emplace(names[i], t);
  }
  return out;
}

std::string read_string(InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  return v.toStringRef();
}
int64_t read_int(InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  return v.toInt();
}
bool read_bool(InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  return v.toBool();
}

std::string type_name(const torch::optim::Optimizer& optimizer) { return c10::demangle(typeid(optimizer).name()); }

std::vector<std::string> callback_names(const Callbacks& callbacks) {
  std::vector<std::string> names;
  for (const auto& cb : callbacks) names.push_back(cb->name());
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out.empty() ? "none" : out;
}

InputArchive open_state_archive(const fs::path& path, torch::Device device) {
  uint32_t format = 0;
  std::istringstream payload(envelope::unwrap(kStateKind, path, kStateFormat, format));
  InputArchive archive;
  try {
    archive.load_from(payload, device);
  } catch (const std::exception&) {
    throw CheckpointError("state file '" + path.string() + "' cannot be read: its checksum is right but LibTorch "
                          "cannot load it (written by an incompatible LibTorch?)");
  }
  return archive;
}

StateInfo read_info(InputArchive& archive, const fs::path& path) {
  c10::IValue magic;
  if (!archive.try_read("magic", magic) || !magic.isString() || magic.toStringRef() != kStateMagic) {
    throw CheckpointError("state file '" + path.string() + "' holds a LibTorch archive that is not a torchfit state");
  }
  StateInfo info;
  try {
    info.format = read_int(archive, "format");
    if (info.format > kStateFormat) {
      throw CheckpointError("state file '" + path.string() + "' has format version " + std::to_string(info.format) +
                            ", newer than this torchfit reads (" + std::to_string(kStateFormat) +
                            "); use a newer torchfit");
    }
    info.model = read_string(archive, "model");
    info.config = read_string(archive, "config");
    info.epochs_done = read_int(archive, "epochs_done");
    info.next_epoch = read_int(archive, "next_epoch");
    info.next_batch = read_int(archive, "next_batch");
    info.validating = read_bool(archive, "validating");
    info.global_step = read_int(archive, "global_step");
    info.finished = read_bool(archive, "finished");
    info.stopped = read_bool(archive, "stopped");
    info.stop_reason = read_string(archive, "stop_reason");
    info.epochs = read_int(archive, "epochs");
  } catch (const c10::Error& e) {
    throw CheckpointError("state file '" + path.string() + "' is damaged: " + e.what_without_backtrace());
  }
  if (info.next_epoch < 1 || info.next_batch < 0 || info.epochs_done < 0 || info.global_step < 0) {
    throw CheckpointError("state file '" + path.string() + "' is damaged: its position (epoch " +
                          std::to_string(info.next_epoch) + ", batch " + std::to_string(info.next_batch) +
                          ") is impossible");
  }
  return info;
}

// The history rows kept in a state archive.
History read_history(InputArchive& archive) {
  const auto sizes = read_list(archive, "history_sizes");
  const auto keys = read_list(archive, "history_keys");
  const auto values = read_list(archive, "history_values");
  if (keys.size() != values.size()) throw CheckpointError("the history's keys and values differ in length");
  History history;
  size_t k = 0;
  for (const auto& size : sizes) {
    Logs row;
    for (int64_t j = 0; j < size.toInt(); ++j, ++k) {
      if (k >= keys.size()) throw CheckpointError("the history is shorter than its row sizes say");
      row.set(keys[k].toStringRef(), values[k].toDouble());
    }
    history.append(std::move(row));
  }
  return history;
}

// Runs `body`, turning LibTorch's errors about a malformed archive into one clear message.
template <typename Body>
void reading(const fs::path& path, Body&& body) {
  try {
    body();
  } catch (const CheckpointError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CheckpointError("state file '" + path.string() + "' is damaged: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw CheckpointError("state file '" + path.string() + "' is damaged: " + e.what());
  }
}

}  // namespace

StateInfo read_state_info(const fs::path& path) {
  auto archive = open_state_archive(path, torch::kCPU);
  return read_info(archive, path);
}

History read_state_history(const fs::path& path) {
  auto archive = open_state_archive(path, torch::kCPU);
  const auto info = read_info(archive, path);
  History history;
  reading(path, [&] { history = read_history(archive); });
  if (static_cast<int64_t>(history.size()) != info.epochs_done) {
    throw CheckpointError("state file '" + path.string() + "' is damaged: it holds " + std::to_string(history.size()) +
                          " history rows for " + std::to_string(info.epochs_done) + " epochs");
  }
  if (info.stopped) history.set_stop_reason(info.stop_reason);
  return history;
}

// ---- saving --------------------------------------------------------------------------------

Trainer::StateSaver::StateSaver(fs::path path) : path_(std::move(path)) {
  if (path_.empty()) return;
  check_writable_parent(path_, "state file");
}

Trainer::StateSaver::~StateSaver() {
  try {
    wait();
  } catch (const std::exception& e) {
    logger("trainer")->error("{}", e.what());
  }
}

void Trainer::StateSaver::save(std::string bytes) {
  wait();
  pending_ = std::async(std::launch::async,
                        [path = path_, bytes = std::move(bytes)] { atomic_write_bytes(path, bytes, "state file"); });
}

void Trainer::StateSaver::wait() {
  if (pending_.valid()) pending_.get();
}

std::string Trainer::serialize_state(const Context& ctx, const FitRun& run, const SavePoint& point, const Logs& logs) {
  const Callbacks& callbacks = run.callbacks;
  const FitOptions& options = run.options;
  const DataLoader& train = run.train;
  const Position& position = point.position;
  const bool stopped = point.stopped;
  OutputArchive archive;
  archive.write("magic", c10::IValue(std::string(kStateMagic)));
  archive.write("format", c10::IValue(kStateFormat));
  archive.write("model", c10::IValue(net_.name()));
  archive.write("config", c10::IValue(options.run_config()));
  archive.write("epochs_done", c10::IValue(static_cast<int64_t>(history_.size())));
  archive.write("next_epoch", c10::IValue(position.next_epoch));
  archive.write("next_batch", c10::IValue(position.next_batch));
  archive.write("validating", c10::IValue(position.validating));
  archive.write("global_step", c10::IValue(ctx.global_step));
  const bool finished = stopped || (position.next_epoch > options.epochs() && position.next_batch == 0);
  archive.write("finished", c10::IValue(finished));
  archive.write("stopped", c10::IValue(stopped));
  archive.write("stop_reason", c10::IValue(stopped ? ctx.stop_reason() : std::string()));
  archive.write("epochs", c10::IValue(options.epochs()));

  // What must be the same on a resume.
  archive.write("optimizer_type", c10::IValue(type_name(*optimizer_)));
  archive.write("callback_names", c10::IValue(list_of(callback_names(callbacks))));
  std::vector<std::string> metric_names;
  for (const auto& [name, m] : metrics_) metric_names.push_back(name);
  archive.write("metric_names", c10::IValue(list_of(metric_names)));
  archive.write("loss_outputs", c10::IValue(list_of(loss_outputs())));
  archive.write("loader_seed", c10::IValue(static_cast<int64_t>(train.seed())));
  archive.write("loader_samples", c10::IValue(train.num_samples()));
  archive.write("loader_batches", c10::IValue(train.num_batches()));
  // Data-parallel: the loader above is this process's shard; the whole set and the process
  // count let a resume with another count check the data.
  archive.write("dataset_size", c10::IValue(train.dataset_size()));  // -1: a stream of unknown length
  archive.write("world_size", c10::IValue(static_cast<int64_t>(comm_ ? comm_->world_size() : 1)));

  // The model, its gradients mid-accumulation, the optimizer (a schedule is a callback: below).
  std::vector<std::pair<std::string, torch::Tensor>> weights, grads;
  for (const auto& p : net_.module().named_parameters()) {
    weights.emplace_back(p.key(), p.value());
    if (p.value().grad().defined()) grads.emplace_back(p.key(), p.value().grad());
  }
  for (const auto& b : net_.module().named_buffers()) weights.emplace_back(b.key(), b.value());
  write_tensors(archive, "net", weights);
  write_tensors(archive, "grads", grads);
  OutputArchive optimizer;
  optimizer_->save(optimizer);
  archive.write("optimizer", optimizer);
  // A custom step: every optimizer it owns, by name, and its own state.
  if (step_) {
    std::vector<std::string> names;
    for (const auto& [name, opt] : step_->optimizers()) {
      OutputArchive o;
      opt->save(o);
      archive.write("step_optimizer." + name, o);
      names.push_back(name);
    }
    archive.write("step_optimizers", c10::IValue(list_of(names)));
    OutputArchive st;
    step_->state_dict(st);
    archive.write("step", st);
  }

  // The history and the epoch in progress.
  std::vector<int64_t> row_sizes;
  c10::List<std::string> keys;
  c10::List<double> values;
  for (const auto& row : history_.rows()) {
    row_sizes.push_back(static_cast<int64_t>(row.size()));
    for (const auto& [k, v] : row) {
      keys.push_back(k);
      values.push_back(v);
    }
  }
  archive.write("history_sizes", c10::IValue(list_of(row_sizes)));
  archive.write("history_keys", c10::IValue(keys));
  archive.write("history_values", c10::IValue(values));
  write_logs(archive, "logs", logs);
  archive.write("has_accumulators", c10::IValue(point.with_running_sums));
  if (point.with_running_sums) {
    OutputArchive acc;
    acc.write("loss_sum", loss_sum_.detach().clone());
    if (!output_loss_sums_.empty()) acc.write("output_loss_sums", torch::stack(output_loss_sums_).detach().clone());
    if (step_) {
      std::vector<std::string> names;
      std::vector<torch::Tensor> sums;
      for (const auto& [name, sum] : step_sums_) {
        names.push_back(name);
        sums.push_back(sum);
      }
      acc.write("step_names", c10::IValue(list_of(names)));
      if (!sums.empty()) acc.write("step_sums", torch::stack(sums).detach().clone());
    }
    acc.write("samples", c10::IValue(sample_count_));
    for (size_t i = 0; i < metrics_.size(); ++i) {
      OutputArchive m;
      const bool saved = metrics_[i].second->state_dict(m);
      m.write("saved", c10::IValue(saved));
      acc.write("metric" + std::to_string(i), m);
      if (!saved && !warned_metric_state_) {
        logger("trainer")->warn(
            "metric '{}' cannot save its running sums; if this run is resumed in the middle of epoch {}, "
            "train_{} of that epoch will cover only the batches after the resume",
            metrics_[i].first, ctx.epoch, metrics_[i].first);
        warned_metric_state_ = true;
      }
    }
    archive.write("accumulators", acc);
  }

  // The callbacks (each may wait here for its own writes in flight).
  for (size_t i = 0; i < callbacks.size(); ++i) {
    OutputArchive cb;
    callbacks[i]->state_dict(cb);
    archive.write("callback" + std::to_string(i), cb);
  }

  // The loss scale of mixed precision: a resume scales as the run would have.
  if (scaler_) {
    archive.write("grad_scaler", torch::tensor({scaler_->scale_value(), static_cast<double>(scaler_->good_steps()),
                                                static_cast<double>(scaler_->skipped_steps())},
                                               torch::kDouble));
  }

  // The random generators: dropout and anything else drawing numbers continues identically.
  {
    at::Generator cpu = at::globalContext().defaultGenerator(at::kCPU);
    std::lock_guard<std::mutex> lock(cpu.mutex());
    archive.write("rng_cpu", cpu.get_state());
  }
  if (device_.is_cuda()) {
    at::Generator cuda =
        at::globalContext().defaultGenerator(torch::Device(torch::kCUDA, device_.has_index() ? device_.index() : 0));
    std::lock_guard<std::mutex> lock(cuda.mutex());
    archive.write("rng_cuda", cuda.get_state());
  }

  std::ostringstream out;
  archive.save_to(out);
  return envelope::wrap(kStateKind, static_cast<uint32_t>(kStateFormat), out.str());
}

// ---- resuming ------------------------------------------------------------------------------

std::unique_ptr<Trainer::Resume> Trainer::open_state(const FitOptions& options, const Callbacks& callbacks,
                                                     const DataLoader& train) const {
  const fs::path& path = options.resume_from();
  auto resume = std::make_unique<Resume>();
  resume->path = path;
  resume->archive = open_state_archive(path, device_);
  resume->info = read_info(resume->archive, path);
  auto& archive = resume->archive;
  const std::string where = "state file '" + path.string() + "'";
  reading(path, [&] {
    const auto& info = resume->info;
    if (!info.model.empty() && !net_.name().empty() && info.model != net_.name()) {
      throw CheckpointError(where + " was written for model '" + info.model + "', not '" + net_.name() + "'");
    }
    // Callbacks are matched by name: one left out has its state dropped, one added starts
    // with none (both said in the log, by restore_callbacks).
    std::vector<std::string> metric_names;
    for (const auto& [name, m] : metrics_) metric_names.push_back(name);
    const auto saved_metrics = read_strings(archive, "metric_names");
    if (saved_metrics != metric_names) {
      throw CheckpointError(where + " was written with metrics " + joined(saved_metrics) + ", but this fit has " +
                            joined(metric_names));
    }
    c10::IValue saved_losses;
    if (archive.try_read("loss_outputs", saved_losses)) {
      const auto saved = read_strings(archive, "loss_outputs");
      if (saved != loss_outputs()) {
        auto words = [](const std::vector<std::string>& v) {
          return v == std::vector<std::string>{""} ? std::string("one loss") : "losses for " + joined(v);
        };
        throw CheckpointError(where + " was written with " + words(saved) + ", but this fit has " + words(loss_outputs()));
      }
    }
    const auto optimizer = read_string(archive, "optimizer_type");
    if (optimizer != type_name(*optimizer_)) {
      throw CheckpointError(where + " was written with optimizer " + optimizer + ", but this fit uses " +
                            type_name(*optimizer_));
    }
    const int64_t samples = read_int(archive, "loader_samples");
    const int64_t batches = read_int(archive, "loader_batches");
    const auto seed = static_cast<uint64_t>(read_int(archive, "loader_seed"));
    c10::IValue v;
    const int64_t saved_world = archive.try_read("world_size", v) ? v.toInt() : 1;
    const int64_t world = comm_ ? comm_->world_size() : 1;
    if (saved_world != world) {
      // Another process count: each process's shard differs, so only an epoch's end is a
      // place both runs share.
      if (archive.try_read("dataset_size", v) && v.toInt() != train.dataset_size()) {
        throw CheckpointError(where + " was written for " + std::to_string(v.toInt()) + " training samples, but this "
                              "fit has " + std::to_string(train.dataset_size()) + "; resume with the same data");
      }
      if (info.next_batch > 0 || info.validating) {
        throw CheckpointError(where + " was saved in the middle of epoch " + std::to_string(info.next_epoch) + " by " +
                              std::to_string(saved_world) + " process" + (saved_world == 1 ? "" : "es") +
                              "; resume it with that many (a state saved at an epoch's end resumes with any number)");
      }
    } else if ((samples < 0) != (train.num_samples() < 0)) {
      throw CheckpointError(where + " was written for " +
                            (samples < 0 ? std::string("a stream of unknown length") : "a dataset of known size") +
                            ", but this fit trains on " + (samples < 0 ? "a dataset of known size" : "a stream") +
                            "; resume with the same data");
    } else if (samples != train.num_samples() || batches != train.num_batches()) {
      throw CheckpointError(where + " was written for " + std::to_string(samples) + " training samples in " +
                            std::to_string(batches) + " batches, but this fit has " +
                            std::to_string(train.num_samples()) + " in " + std::to_string(train.num_batches()) +
                            "; resume with the same data and batch size");
    }
    // The seed orders a shuffled epoch and draws every transform's randomness.
    const bool seeded = train.options().shuffle() || !train.options().transforms().empty() ||
                        !train.options().batch_transforms().empty();
    if (seeded && seed != train.seed()) {
      throw CheckpointError(where + " was written with loader seed " + std::to_string(seed) + ", but this loader has " +
                            std::to_string(train.seed()) + "; resume with the same seed");
    }
    if (batches >= 0 && info.next_batch > batches) {
      throw CheckpointError(where + " is damaged: it continues at batch " + std::to_string(info.next_batch) +
                            " of an epoch of " + std::to_string(batches));
    }
  });
  return resume;
}

namespace {

// LibTorch's Optimizer::load restores the per-parameter state but not the groups' options: a
// rate a schedule, nan_guard's rollback or a callback changed would go back to the one the
// optimizer was built with. Each group's saved options are read back into it here.
void load_optimizer(torch::optim::Optimizer& optimizer, InputArchive& archive) {
  optimizer.load(archive);
  InputArchive groups;
  if (!archive.try_read("param_groups", groups)) return;
  auto& live = optimizer.param_groups();
  for (size_t i = 0; i < live.size(); ++i) {
    InputArchive group, options;
    if (groups.try_read("param_groups/" + std::to_string(i), group) && group.try_read("options", options)) {
      live[i].options().serialize(options);
    }
  }
}

}  // namespace

void Trainer::restore_state(Resume& resume, Context& ctx) {
  auto& archive = resume.archive;
  reading(resume.path, [&] {
    const std::string source = "state file '" + resume.path.string() + "'";
    assign_weights(net_, read_tensors(archive, "net"), source);
    const auto grads = read_tensors(archive, "grads");
    for (auto& p : net_.module().named_parameters()) {
      auto it = grads.find(p.key());
      if (it != grads.end()) p.value().mutable_grad() = it->second.to(p.value().device()).clone();
    }
    InputArchive optimizer;
    archive.read("optimizer", optimizer);
    load_optimizer(*optimizer_, optimizer);
    InputArchive scheduler;  // older state files kept the constructor's schedule apart from the callbacks
    if (schedule_ && archive.try_read("scheduler", scheduler)) schedule_->load_state_dict(scheduler);
    if (step_) {
      c10::IValue listed;
      const auto saved = archive.try_read("step_optimizers", listed) ? read_strings(archive, "step_optimizers")
                                                                      : std::vector<std::string>();
      for (const auto& [name, opt] : step_->optimizers()) {
        if (std::find(saved.begin(), saved.end(), name) == saved.end()) {
          throw CheckpointError(source + " holds no optimizer '" + name + "' of the step (it holds " + joined(saved) +
                                "); resume with the step that wrote it");
        }
        InputArchive o;
        archive.read("step_optimizer." + name, o);
        load_optimizer(*opt, o);
      }
      InputArchive st;
      if (!archive.try_read("step", st)) throw CheckpointError(source + " was not written by a fit with a custom step");
      step_->load_state_dict(st);
    }

    const History kept = read_history(archive);
    for (const auto& row : kept.rows()) history_.append(row);
    ctx.logs = read_logs(archive, "logs");
    ctx.global_step = resume.info.global_step;
    ctx.resumed = true;
    torch::Tensor scaler;
    if (scaler_ && archive.try_read("grad_scaler", scaler) && scaler.numel() == 3) {
      const auto v = scaler.to(torch::kDouble).contiguous();
      const double* d = v.data_ptr<double>();
      scaler_->set_state(d[0], static_cast<int64_t>(d[1]), static_cast<int64_t>(d[2]));
    }

    torch::Tensor cpu_state;
    archive.read("rng_cpu", cpu_state);
    at::Generator cpu = at::globalContext().defaultGenerator(at::kCPU);
    {
      std::lock_guard<std::mutex> lock(cpu.mutex());
      cpu.set_state(cpu_state.to(torch::kCPU));
    }
    torch::Tensor cuda_state;
    if (device_.is_cuda() && archive.try_read("rng_cuda", cuda_state)) {
      at::Generator cuda = at::globalContext().defaultGenerator(
          torch::Device(torch::kCUDA, device_.has_index() ? device_.index() : 0));
      std::lock_guard<std::mutex> lock(cuda.mutex());
      cuda.set_state(cuda_state.to(torch::kCPU));
    }
  });
  const auto& info = resume.info;
  logger("trainer")->info("resuming {} at epoch {}{} (step {}, {} epochs done)", resume.path.string(), info.next_epoch,
                          info.validating      ? ", validation"
                          : info.next_batch > 0 ? ", batch " + std::to_string(info.next_batch + 1)
                                                : std::string(),
                          info.global_step, info.epochs_done);
}

void Trainer::restore_callbacks(Resume& resume, const Callbacks& callbacks) {
  std::vector<std::string> saved;
  reading(resume.path, [&] { saved = read_strings(resume.archive, "callback_names"); });
  std::vector<bool> used(saved.size(), false);
  for (const auto& callback : callbacks) {
    // The first saved callback of the same name not yet taken (names may repeat in the API).
    size_t i = 0;
    while (i < saved.size() && (used[i] || saved[i] != callback->name())) ++i;
    if (i == saved.size()) {
      logger("trainer")->warn("callback '{}' was not part of the saved run; it starts with no state", callback->name());
      continue;
    }
    used[i] = true;
    InputArchive cb;
    reading(resume.path, [&] { resume.archive.read("callback" + std::to_string(i), cb); });
    try {
      callback->load_state_dict(cb);
    } catch (const c10::Error& e) {
      throw CallbackError(callback->name(), "load_state_dict", e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw CallbackError(callback->name(), "load_state_dict", e.what());
    }
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    if (!used[i]) logger("trainer")->info("callback '{}' of the saved run is not used now; its state is dropped", saved[i]);
  }
}

void Trainer::restore_accumulators(Resume& resume) {
  reading(resume.path, [&] {
    if (!read_bool(resume.archive, "has_accumulators")) return;
    InputArchive acc;
    resume.archive.read("accumulators", acc);
    torch::Tensor loss_sum;
    acc.read("loss_sum", loss_sum);
    loss_sum_.copy_(loss_sum);
    torch::Tensor output_sums;
    if (!output_loss_sums_.empty()) {
      if (!acc.try_read("output_loss_sums", output_sums) ||
          output_sums.numel() != static_cast<int64_t>(output_loss_sums_.size())) {
        throw CheckpointError("state file '" + resume.path.string() + "' holds no running sum for each of the " +
                              std::to_string(output_loss_sums_.size()) + " per-output losses of this fit");
      }
      for (size_t k = 0; k < output_loss_sums_.size(); ++k) output_loss_sums_[k].copy_(output_sums[static_cast<int64_t>(k)]);
    }
    step_sums_.clear();
    c10::IValue step_names;
    if (step_ && acc.try_read("step_names", step_names)) {
      const auto names = read_strings(acc, "step_names");
      torch::Tensor sums;
      if (!names.empty() && (!acc.try_read("step_sums", sums) || sums.numel() != static_cast<int64_t>(names.size()))) {
        throw CheckpointError("state file '" + resume.path.string() + "' is damaged: its step sums do not match their names");
      }
      for (size_t k = 0; k < names.size(); ++k) {
        step_sums_.emplace_back(names[k], sums[static_cast<int64_t>(k)].to(loss_sum_.options()).clone());
      }
    }
    sample_count_ = read_int(acc, "samples");
    for (size_t i = 0; i < metrics_.size(); ++i) {
      InputArchive m;
      acc.read("metric" + std::to_string(i), m);
      if (read_bool(m, "saved")) metrics_[i].second->load_state_dict(m);
    }
  });
}

}  // namespace torchfit
