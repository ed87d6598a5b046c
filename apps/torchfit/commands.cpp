// The runner's commands: train, evaluate, predict, summary, plugins.
#include "commands.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <torchfit/torchfit.hpp>
#include <torchfit/text.hpp>

namespace torchfit::cli {

namespace fs = std::filesystem;

namespace {

std::string required(const Invocation& inv, const std::string& key, const std::string& what) {
  if (!inv.options.count(key)) {
    std::string extra;
    if (key == "model") {
      const auto names = inv.registry->names(PluginKind::Model);
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      extra = " (models: " + (list.empty() ? std::string("none found") : list) + ")";
    }
    throw ConfigError("'torchfit " + inv.command + "' needs --" + key + " " + what + extra);
  }
  return inv.options[key].as<std::string>();
}

// --val-split given for data that comes split already: said, not ignored.
void refuse_val_split(const Invocation& inv, const std::string& why) {
  if (inv.command == "train" && inv.on_command_line("val-split")) {
    throw ConfigError("--val-split does not apply: " + why);
  }
}

void set_option(Invocation& inv, const std::string& key, boost::any value) {
  inv.options.erase(key);
  inv.options.insert({key, po::variable_value(std::move(value), false)});
}

// --workers: "auto" (suggested_workers) or a count from 0 to 64.
int64_t parse_workers(const std::string& value, const Dataset& data, const LoaderOptions& options) {
  if (value == "auto") return suggested_workers(data, options);
  const auto n = parse_int_list(value, 0, 64);
  if (!n || n->size() != 1) {
    throw ConfigError("--workers takes auto or a number of threads from 0 to 64, got '" + value + "'");
  }
  return n->front();
}

using Purpose = DataRequest::Purpose;

// One train run per checkpoint path: an exclusive flock on FILE.lock, held while the run lives
// and released by the kernel however it ends (kill -9 included), so a stale lock never blocks.
// The file holds the holder's process id, for the message; it is removed on a normal exit.
class RunLock {
 public:
  explicit RunLock(fs::path path) : path_(std::move(path)) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) throw Error("cannot create the lock file " + path_.string() + ": " + std::strerror(errno));
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        std::string holder;
        std::ifstream(path_) >> holder;
        ::close(fd_);
        fd_ = -1;
        throw Error("checkpoint path '" + base().string() + "' is in use by another torchfit train" +
                    (holder.empty() ? std::string() : " (process " + holder + ")") +
                    ": two runs would mix their files. Wait for it to end, or give another --ckpt-path");
      }
      // The lock is on the file this path names now (a run ending may have just removed it).
      struct stat held {}, named {};
      if (::fstat(fd_, &held) == 0 && ::stat(path_.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
          held.st_dev == named.st_dev) {
        const std::string pid = std::to_string(::getpid()) + "\n";
        if (::ftruncate(fd_, 0) == 0 && ::write(fd_, pid.data(), pid.size()) < 0) {
          // The pid is for messages only.
        }
        return;
      }
      ::close(fd_);
      fd_ = -1;
    }
    throw Error("cannot lock " + path_.string() + ": it keeps being replaced");
  }
  ~RunLock() {
    if (fd_ < 0) return;
    std::error_code ec;
    fs::remove(path_, ec);  // while still holding it: the next run finds no file or its own
    ::close(fd_);
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  fs::path base() const { return path_.parent_path() / path_.stem(); }
  fs::path path_;
  int fd_ = -1;
};

// Writes the run's settings (FILE.ini) once fit() has checked the run (the monitored keys, the
// preflight) and is about to train: a run refused before that leaves the files an earlier run
// wrote on the same path as they were.
class SettingsFile final : public Callback {
 public:
  SettingsFile(fs::path path, std::string settings) : path_(std::move(path)), settings_(std::move(settings)) {
    set_name("settings_file");
  }
  void on_fit_begin(Context&) override {
    atomic_write_text(path_, [&](std::ostream& out) { out << settings_; });
  }
  bool rank_zero_only() const override { return true; }

 private:
  fs::path path_;
  std::string settings_;
};

// The model, its net and data, and the metrics: what every command but plugins needs.
struct Setup {
  std::string name;
  std::shared_ptr<ModelPlugin> model;
  const PluginEntry* entry = nullptr;
  Net net;
  std::shared_ptr<DatasetPlugin> dataset;  // null: the model's own data
  const PluginEntry* dataset_entry = nullptr;
  // Train: both splits; evaluate: val; predict and summary: train (the data to read).
  std::shared_ptr<const Dataset> train, val;
  std::vector<Transform> train_transforms, eval_transforms;
  Metrics metrics;
  int64_t batch_size = 0;
  uint64_t seed = 0;
};

// The csv dataset's options, which the runner also takes without the csv. prefix.
const char* const kCsvShortcuts[] = {"data", "val-data", "target", "features", "delimiter", "missing"};

// `count` samples of `all` held out for validation, at random (seeded): the rest trains.
std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> hold_out(std::shared_ptr<const Dataset> all,
                                                                                  int64_t count, uint64_t seed) {
  if (const auto* tensors = dynamic_cast<const TensorDataset*>(all.get())) {
    // In memory: the parts are copies, gathered once.
    auto parts = random_split(*tensors, std::vector<int64_t>{all->size() - count, count}, seed);
    return {std::make_shared<TensorDataset>(parts[0]), std::make_shared<TensorDataset>(parts[1])};
  }
  const auto order = seeded_permutation(all->size(), seed, 0);
  const int64_t* p = order.data_ptr<int64_t>();
  std::vector<int64_t> train(p, p + all->size() - count), val(p + all->size() - count, p + all->size());
  return {subset(all, std::move(train)), subset(all, std::move(val))};
}

// The run's data: the model's own, or a dataset plugin's (--dataset; --data for csv).
void load_data(Invocation& inv, Setup& s, Purpose purpose) {
  if (inv.dataset.empty()) {
    for (const char* key : {"val-data", "target", "features"}) {
      if (purpose == Purpose::Train && inv.has(key)) {
        throw ConfigError(std::string("--") + key + " goes with --data FILE.csv (the model's own data has none)");
      }
    }
    refuse_val_split(inv, "model " + s.name + "'s own data comes split into training and validation; give "
                          "--data FILE.csv or --dataset NAME to split data of your own");
    auto splits = s.model->make_data(s.seed);
    s.train = std::make_shared<TensorDataset>(splits.train);
    s.val = std::make_shared<TensorDataset>(splits.val);
    return;
  }
  if (inv.dataset != "csv") {
    for (const char* key : kCsvShortcuts) {
      if (inv.on_command_line(key)) {
        throw ConfigError(std::string("--") + key + " is an option of the csv dataset (CSV files), not of --dataset " +
                          inv.dataset + "; its options are --" + inv.dataset + ".<option> (torchfit " + inv.command +
                          " --dataset " + inv.dataset + " --help lists them)");
      }
    }
  }
  s.dataset_entry = &inv.registry->find(inv.dataset, PluginKind::Dataset);
  s.dataset = inv.registry->make_dataset(inv.dataset, inv.plugin_options(*s.dataset_entry));
  s.train_transforms = s.dataset->transforms(true);
  s.eval_transforms = s.dataset->transforms(false);
  DataRequest request;
  request.purpose = purpose;
  request.make_targets = [model = s.model](const torch::Tensor& column, const std::string& origin) {
    return model->make_targets(column, origin);
  };
  if (purpose == Purpose::Predict) request.input_features = s.model->input_features();
  auto need = [&](std::shared_ptr<const Dataset> data) {
    if (!data) throw PluginError("dataset plugin '" + inv.dataset + "' returned no data");
    if (data->size() == 0) throw DataError(data->name() + " holds no samples");
    return data;
  };
  if (purpose == Purpose::Predict || purpose == Purpose::Summary) {
    s.train = need(s.dataset->load(request));
    return;
  }
  // Evaluate, given data on its command line: all of it. Otherwise the run's validation data.
  if (purpose == Purpose::Evaluate && inv.data_on_command_line()) {
    s.val = need(s.dataset->load(request));
    return;
  }
  auto all = need(s.dataset->load(request));
  if (auto val = s.dataset->load_validation(request)) {
    refuse_val_split(inv, "dataset " + inv.dataset + " gives its own validation data (" + val->name() + ")");
    s.train = all;
    s.val = need(val);
    return;
  }
  // Train's own option; evaluate finds it in the run's settings (FILE.ini).
  double f = 0.2;
  if (purpose == Purpose::Train) {
    f = inv.options["val-split"].as<double>();
  } else if (const auto text = inv.config_value("val-split")) {
    try {
      f = std::stod(*text);
    } catch (const std::exception&) {
      throw ConfigError("val-split in the run's settings is not a number: '" + *text + "'");
    }
    if (!val_split_range().accepts(f)) throw ConfigError("val-split in the run's settings " + refusal(val_split_range(), *text));
  }
  const auto val = static_cast<int64_t>(std::llround(f * static_cast<double>(all->size())));
  if (val < 1 || val >= all->size()) {
    throw DataError("--val-split " + format_value(f) + " of the " + std::to_string(all->size()) + " samples of " +
                    all->name() + " leaves " + (val < 1 ? "no validation samples" : "no training samples") +
                    "; give more data or another fraction");
  }
  std::tie(s.train, s.val) = hold_out(all, val, s.seed);
}

// --threads: LibTorch's intra-op threads. Its own default can be lower than the machine's
// cores (1 on a 2-core VM with LibTorch 1.13), which halves a CNN's speed; OMP_NUM_THREADS,
// when set (by the user, or by --nproc for each process), is LibTorch's and wins.
void set_threads(const std::string& value) {
  int64_t n = 0;
  if (value == "auto") {
    if (std::getenv("OMP_NUM_THREADS")) return;
    n = std::max<int64_t>(1, std::thread::hardware_concurrency());
  } else {
    const auto count = parse_int_list(value, 1, 1024);
    if (!count || count->size() != 1) {
      throw ConfigError("--threads takes auto or a number of threads from 1 to 1024, got '" + value + "'");
    }
    n = count->front();
  }
  if (torch::get_num_threads() != n) torch::set_num_threads(static_cast<int>(n));
  spdlog::debug("{} intra-op thread{} for the net's CPU kernels", n, n == 1 ? "" : "s");
}

Setup set_up(Invocation& inv, Purpose purpose, bool with_metrics) {
  Setup s;
  if (inv.options.count("threads")) set_threads(inv.options["threads"].as<std::string>());
  s.name = required(inv, "model", "NAME");
  s.entry = &inv.registry->find(s.name, PluginKind::Model);
  s.model = inv.registry->make_model(s.name, inv.plugin_options(*s.entry));
  s.seed = inv.options.count("seed") ? inv.options["seed"].as<uint64_t>() : 2;
  s.batch_size = inv.options.count("batch-size") ? inv.options["batch-size"].as<int64_t>() : s.model->default_batch_size();
  seed_everything(s.seed);
  load_data(inv, s, purpose);
  if (s.dataset && (purpose == Purpose::Train || purpose == Purpose::Summary)) {
    s.model->adapt(*s.train);
    // Record what the model learned from the data, so evaluate and predict build the same net.
    auto& values = inv.plugin_values[s.name];
    for (const auto& [key, value] : s.model->learned_options()) {
      values.erase(std::remove_if(values.begin(), values.end(),
                                  [&, &k = key](const std::string& v) { return v.rfind("--" + k + "=", 0) == 0; }),
                   values.end());
      values.push_back("--" + key + "=" + value);
    }
  }
  s.net = s.model->make_net();
  if (with_metrics) {
    const auto names = inv.metrics.empty() ? s.model->default_metrics() : inv.metrics;
    for (const auto& name : names) {
      for (const auto& [existing, m] : s.metrics) {
        if (existing == name) throw ConfigError("metric '" + name + "' is listed twice in --metrics");
      }
      const auto& entry = inv.registry->find(name, PluginKind::Metric);
      s.metrics.emplace_back(name, inv.registry->make_metric(name, inv.plugin_options(entry)));
    }
  }
  return s;
}

// The optimizer over the net's parameter groups (group g at groups.lrs[g]; --lr-groups).
std::shared_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, const ParamGroups& groups,
                                                        double momentum, double weight_decay) {
  namespace optim = torch::optim;
  auto split = [&](auto options) {
    std::vector<optim::OptimizerParamGroup> out;
    for (size_t g = 0; g < groups.params.size(); ++g) {
      if (groups.params[g].empty()) continue;  // every parameter went to a --lr-groups group
      auto o = std::make_unique<decltype(options)>(options);
      o->lr(groups.lrs[g]);
      out.emplace_back(groups.params[g], std::move(o));
    }
    return out;
  };
  if (name == "adam") {
    const auto o = optim::AdamOptions(groups.lrs[0]).weight_decay(weight_decay);
    return std::make_shared<optim::Adam>(split(o), o);
  }
  if (name == "adamw") {
    const auto o = optim::AdamWOptions(groups.lrs[0]).weight_decay(weight_decay);
    return std::make_shared<optim::AdamW>(split(o), o);
  }
  if (name == "sgd") {
    const auto o = optim::SGDOptions(groups.lrs[0]).momentum(momentum).weight_decay(weight_decay);
    return std::make_shared<optim::SGD>(split(o), o);
  }
  const auto guess = closest_name(name, {"adam", "adamw", "sgd"});
  throw ConfigError("unknown optimizer '" + name + "'" + (guess.empty() ? "" : "; did you mean '" + guess + "'?") +
                    " Optimizers: adam, adamw, sgd");
}

// Data-parallel: --nproc N starts N workers running this same command (this process then only
// waits for them: launcher_exit); a worker (WORLD_SIZE set, by the launcher or by hand on each
// machine) joins the others (comm). One process: neither.
struct Processes {
  std::optional<int> launcher_exit;
  std::shared_ptr<Communicator> comm;
};

Processes join_processes(const Invocation& inv) {
  const auto nproc = inv.options["nproc"].as<int64_t>();
  const auto dist_timeout = inv.options["dist-timeout"].as<int64_t>();
  auto dist = distributed_from_env();
  if (!dist && nproc > 1) {
    if (!distributed_available()) {
      throw ConfigError("--nproc needs c10d's Gloo backend, which this torchfit was built without (install "
                        "libgloo-dev and rebuild)");
    }
    return {launch_workers(inv.argc, inv.argv, static_cast<int>(nproc), std::chrono::seconds(dist_timeout + 5)), nullptr};
  }
  Processes out;
  if (dist && dist->world_size > 1) {
    if (inv.has("nproc") && nproc != dist->world_size) {
      throw ConfigError("--nproc " + std::to_string(nproc) + " but WORLD_SIZE is " + std::to_string(dist->world_size));
    }
    dist->timeout = std::chrono::seconds(dist_timeout);
    out.comm = connect(*dist);
    logger("runner")->info("<<<<<< data-parallel: {} processes (c10d Gloo via {}:{}), {} threads each >>>>>>",
                           dist->world_size, dist->master_addr, dist->master_port, torch::get_num_threads());
  }
  return out;
}

// --init-weights FILE: the net's starting weights from a file of another run or framework.
void init_weights_from(const Invocation& inv, Net& net) {
  if (!inv.has("init-weights")) return;
  const fs::path file = inv.options["init-weights"].as<std::string>();
  const auto report = init_weights(net, file, inv.options["init-weights-strict"].as<bool>());
  logger("runner")->info("--init-weights {}: {}", file.string(), report.to_string());
}

// The optimizer's parameter groups: --freeze fixes parameters, --lr-groups gives groups their
// rates, and frozen parameters go in groups of their own (at their group's rate), so the
// unfreeze callback warms their rate up alone.
ParamGroups trained_groups(const Invocation& inv, Net& net, double lr) {
  if (inv.has("freeze")) {
    const auto frozen = freeze(net, split_list(inv.options["freeze"].as<std::string>()));
    logger("runner")->info("--freeze: {} parameter tensor{} fixed", frozen.size(), frozen.size() == 1 ? "" : "s");
  }
  const auto lr_groups = inv.has("lr-groups") ? parse_lr_groups(inv.options["lr-groups"].as<std::string>(), "--lr-groups")
                                              : std::vector<LrGroup>{};
  auto groups = param_groups(net, lr_groups, lr);
  for (size_t g = 0, n = groups.params.size(); g < n; ++g) {
    std::vector<torch::Tensor> trained, frozen;
    for (auto& p : groups.params[g]) (p.requires_grad() ? trained : frozen).push_back(p);
    if (frozen.empty()) continue;
    groups.params[g] = std::move(trained);
    groups.params.push_back(std::move(frozen));
    groups.lrs.push_back(groups.lrs[g]);
  }
  return groups;
}

// The files of a train run: the history, and the checkpoint path's weights, settings (.ini)
// and state (.state). Their folders are checked before anything runs.
struct RunFiles {
  fs::path history, ckpt, config, state;

  explicit RunFiles(const Invocation& inv)
      : history(inv.options["history"].as<std::string>()),
        ckpt(inv.options["ckpt-path"].as<std::string>()),
        config(ckpt.string() + ".ini"),
        state(ckpt.string() + ".state") {
    check_writable_parent(history, "history file");
    check_writable_parent(config, "checkpoint path");
  }
  // The history file's text: what the file must hold for `h`.
  std::string history_text(const History& h) const {
    return history.extension() == ".json" ? h.to_json_string() : h.to_csv_string();
  }
  void save_history(const History& h) const {
    atomic_write_text(history, [&](std::ostream& out) { out << history_text(h); });
  }
};

// --resume of a run that already ended: nothing to train. Its last history write may have
// failed (a full disk): the state holds the history too, and the file is made whole from it.
int report_ended_run(const Invocation& inv, const RunFiles& files) {
  const auto& saved = inv.resume_info;
  const auto kept = read_state_history(inv.resume_state);
  std::ifstream in(files.history, std::ios::binary);
  const std::string on_disk{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.is_open() || on_disk != files.history_text(kept)) {
    files.save_history(kept);
    std::cout << files.history.string() << " did not hold the run's " << kept.size()
              << " epochs (its last write failed?): written again from " << inv.resume_state << "\n";
  }
  std::cout << "nothing to resume: the run in " << inv.resume_state << " already ended after " << saved.epochs_done
            << " epochs (" << (saved.stopped ? saved.stop_reason : "completed " + std::to_string(saved.epochs_done) + " epochs")
            << ")" << (saved.stopped ? "" : "; give a larger --epochs to train it further") << "\n";
  return 0;
}

// A run stopped by SIGINT or SIGTERM: its last epochs and the command that continues it.
int report_interrupted(const Invocation& inv, const RunFiles& files, const History& history, int signal) {
  std::string again = "torchfit train --resume";
  if (!inv.options["ckpt-path"].defaulted()) again += " --ckpt-path " + files.ckpt.string();
  if (inv.options.count("plugin-dir")) {
    // The state's settings do not choose where code is loaded from: the folders are given again.
    for (const auto& d : inv.options["plugin-dir"].as<std::vector<std::string>>()) again += " --plugin-dir " + d;
  }
  std::cout << "\n" << history.tail(5) << "\n";
  std::cout << "interrupted by " << signal_name(signal) << " after " << history.size()
            << " complete epochs; the training state is saved in " << files.state.string() << "\n"
            << "continue with: " << again << "\n";
  return 128 + signal;
}

// A run that ended: its last epochs, why it stopped, the best epoch of --monitor, and every
// file the run and its callbacks wrote.
int report_finished(const Invocation& inv, const RunFiles& files, const Trainer& trainer, const History& history,
                    const Callbacks& callbacks) {
  std::cout << "\n" << history.tail(5) << "\n";
  std::cout << "stopped: " << history.stop_reason() << "\n";
  const std::string monitor = inv.has("monitor") ? inv.options["monitor"].as<std::string>() : "val_loss";
  const Monitor best_of(monitor, inv.has("mode") ? parse_monitor_mode(inv.options["mode"].as<std::string>(), "--mode")
                                                 : MonitorMode::Auto);
  std::optional<size_t> best;
  if (const auto known = trainer.higher_is_better(monitor); known || best_of.mode() != MonitorMode::Auto) {
    best_of.resolve(known);
    best = best_of.best_row(history.rows());  // a value whose direction nothing knows has no "best" line
  }
  if (best) {
    std::cout << "best " << monitor << ": " << format_value(*history[*best].get(monitor)) << " (epoch "
              << format_value(history[*best].at("epoch")) << ")\n";
  }
  std::vector<std::pair<std::string, std::string>> listed;
  for (const auto& cb : callbacks) {
    for (auto& f : cb->output_files()) listed.emplace_back(std::move(f.path), std::move(f.what));
  }
  listed.emplace_back(files.history.string(), "history, " + std::to_string(history.size()) + " epochs");
  listed.emplace_back(files.config.string(),
                      "settings of this run; 'torchfit train --config " + files.config.string() + "' repeats it");
  listed.emplace_back(files.state.string(), "full training state; 'torchfit train --resume' continues the run");
  size_t width = 0;
  for (const auto& f : listed) width = std::max(width, f.first.size());
  std::cout << "files:\n";
  for (const auto& [file, what] : listed) {
    std::cout << "  " << file << std::string(width - file.size() + 2, ' ') << what << "\n";
  }
  return 0;
}

}  // namespace

int run_train(Invocation& inv) {
  // Stages: the settings read (ranges were checked as the options were parsed, by
  // torchfit::number and torchfit::one_of), the run's files, the processes, the model, data,
  // optimizer and callbacks built, fit(), the report.
  const auto epochs = inv.options["epochs"].as<int64_t>();
  const auto accumulate = inv.options["accumulate"].as<int64_t>();
  const double clip = inv.options["clip-grad-norm"].as<double>();
  const double clip_value = inv.options["clip-grad-value"].as<double>();
  const double momentum = inv.options["momentum"].as<double>();
  const double weight_decay = inv.options["weight-decay"].as<double>();
  const RunFiles files(inv);
  const auto device = parse_device(inv.options["device"].as<std::string>());
  const auto precision = parse_precision(inv.options["precision"].as<std::string>());
  { AutocastGuard check(precision, device); }  // 16-mixed on a CPU: refused before any file is written
  const auto state_every = inv.options["state-every-steps"].as<int64_t>();
  const bool resuming = !inv.resume_state.empty();
  const auto& saved = inv.resume_info;
  if (resuming && (saved.stopped || (saved.finished && epochs <= saved.epochs_done))) {
    return report_ended_run(inv, files);
  }

  const auto processes = join_processes(inv);
  if (processes.launcher_exit) return *processes.launcher_exit;
  const std::shared_ptr<Communicator>& comm = processes.comm;
  const bool rank0 = !comm || comm->rank() == 0;
  std::optional<RunLock> lock;
  if (rank0) lock.emplace(files.ckpt.string() + ".lock");  // rank 0 writes the run's files

  Setup s = set_up(inv, Purpose::Train, true);
  const auto defaults = s.model->default_optimizer();
  const auto optimizer_name = inv.options.count("optimizer") ? inv.options["optimizer"].as<std::string>() : defaults.name;
  const double lr = inv.options.count("lr") ? inv.options["lr"].as<double>() : defaults.lr;
  if (!resuming) init_weights_from(inv, s.net);  // a resumed run's weights come from its state
  auto optimizer = make_optimizer(optimizer_name, trained_groups(inv, s.net, lr), momentum, weight_decay);

  Callbacks callbacks;
  std::vector<const PluginEntry*> plugins{s.entry};
  if (s.dataset_entry) {
    plugins.push_back(s.dataset_entry);
    set_option(inv, "dataset", inv.dataset);  // --data alone: recorded as the csv dataset
  }
  for (const auto& name : inv.callbacks) {
    const auto& entry = inv.registry->find(name, PluginKind::Callback);
    callbacks.push_back(inv.registry->make_callback(name, inv.plugin_options(entry)));
    plugins.push_back(&entry);
  }
  // Record what the defaults resolved to, so the saved settings repeat this run exactly.
  set_option(inv, "model", s.name);
  set_option(inv, "batch-size", s.batch_size);
  set_option(inv, "optimizer", optimizer_name);
  set_option(inv, "lr", lr);
  std::string metric_list;
  for (const auto& [name, m] : s.metrics) metric_list += (metric_list.empty() ? "" : ",") + name;
  if (!metric_list.empty()) set_option(inv, "metrics", metric_list);
  std::string callback_list;
  for (const auto& name : inv.callbacks) callback_list += (callback_list.empty() ? "" : ",") + name;
  set_option(inv, "callbacks", callback_list.empty() ? std::string("none") : callback_list);
  const auto settings = resolved_config(inv, plugins);
  if (resuming) {
    const auto differences = resume_differences(saved.config, settings);
    if (!differences.empty()) {
      throw ConfigError("cannot resume " + inv.resume_state + " with different settings: " + differences +
                        ". Resume without those options, or train without --resume to start a new run");
    }
  }
  // Checked before any file is written.
  const bool pin = inv.options["pin-memory"].as<bool>();
  auto train_options =
      LoaderOptions(s.batch_size).shuffle(true).seed(s.seed).pin_memory(pin).transforms(s.train_transforms);
  const int64_t workers = parse_workers(inv.options["workers"].as<std::string>(), *s.train, train_options);
  callbacks.insert(callbacks.begin(), std::make_shared<SettingsFile>(files.config, settings));
  install_stop_signal_handlers();

  Trainer trainer(s.net, s.model->make_loss(), s.metrics, optimizer);
  DataLoader train(s.train, train_options.workers(workers));
  DataLoader val;
  if (s.val && s.val->size() > 0) {
    val = DataLoader(s.val, LoaderOptions(s.batch_size).pin_memory(pin).workers(workers).transforms(s.eval_transforms));
  }
  History history;
  try {
    auto options = FitOptions()
                       .epochs(epochs)
                       .callbacks(callbacks)
                       .device(device)
                       .accumulate(accumulate)
                       .clip_grad_norm(clip)
                       .clip_grad_value(clip_value)
                       .state_path(files.state)
                       .state_every_steps(state_every)
                       .run_config(settings)
                       .communicator(comm)
                       .precision(precision)
                       .preflight(!inv.options["no-preflight"].as<bool>());
    if (resuming) options.resume_from(inv.resume_state);
    history = trainer.fit(train, val, options);
  } catch (...) {
    if (rank0 && !trainer.history().empty()) {
      // What stopped the run (a full disk failing the state or checkpoint, say) is the error
      // to report; a history that cannot be written either is only mentioned.
      try {
        files.save_history(trainer.history());
        logger("runner")->warn("the {} finished epochs are saved in {}", trainer.history().size(), files.history.string());
      } catch (const std::exception& e) {
        logger("runner")->warn("the history could not be saved either: {}", e.what());
      }
    }
    throw;
  }
  if (!rank0) return trainer.interrupted_by() ? 128 + trainer.interrupted_by() : 0;  // rank 0 reports
  try {
    files.save_history(history);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + ". The run itself is saved in " + files.state.string() +
                ": once the file can be written, 'torchfit train --resume' writes the history again");
  }
  if (const int signal = trainer.interrupted_by()) return report_interrupted(inv, files, history, signal);

  if (std::find(inv.callbacks.begin(), inv.callbacks.end(), "early_stopping") == inv.callbacks.end() &&
      !history.empty()) {
    // No early_stopping checked the losses epoch by epoch: a run that ends on values that are
    // not numbers still fails (its files are saved, as after any failure).
    const Logs& last = history.back();
    for (const char* key : {"train_loss", "val_loss"}) {
      if (auto v = last.get(key); v && !std::isfinite(*v)) {
        throw Error(std::string(key) + " is " + format_value(*v) + " at epoch " + format_value(last.at("epoch")) +
                    ": the run diverged. Lower --lr or set --clip-grad-norm; add early_stopping to --callbacks to "
                    "stop at the first such epoch, or nan_guard to find the first bad batch");
      }
    }
  }
  return report_finished(inv, files, trainer, history, callbacks);
}

// A loader over data to evaluate or predict on: in order, the dataset's evaluation transforms.
DataLoader eval_loader(const Setup& s, const std::shared_ptr<const Dataset>& data) {
  auto options = LoaderOptions(s.batch_size).transforms(s.eval_transforms);
  return DataLoader(data, options.workers(suggested_workers(*data, options)));
}

int run_evaluate(Invocation& inv) {
  const auto device = parse_device(inv.options["device"].as<std::string>());
  Setup s = set_up(inv, Purpose::Evaluate, true);
  load_weights(s.net, inv.options["ckpt-path"].as<std::string>(), s.name);
  // A classifier (multi-class accuracy among its metrics) also gets the per-class table, from a
  // confusion matrix measured in the same pass: the run's own, or one added here and not listed.
  auto confusion = find_confusion(s.metrics);
  const bool added = !confusion && std::any_of(s.metrics.begin(), s.metrics.end(),
                                               [](const auto& m) { return m.first == "accuracy"; });
  if (added) {
    const auto& entry = inv.registry->find("confusion_matrix", PluginKind::Metric);
    confusion = std::dynamic_pointer_cast<ConfusionMetric>(
        inv.registry->make_metric("confusion_matrix", inv.plugin_options(entry)));
    if (confusion) s.metrics.emplace_back("confusion_matrix", confusion);
  }
  Trainer trainer(s.net, s.model->make_loss(), s.metrics);
  trainer.to(device);
  auto logs = trainer.evaluate(eval_loader(s, s.val));
  if (added) logs.erase("val_confusion_matrix");
  std::optional<ClassReport> report;
  if (confusion) report.emplace(confusion->confusion_matrix(), s.val->classes());
  if (inv.options["json"].as<bool>()) {
    std::cout << "{";
    bool first = true;
    for (const auto& [key, value] : logs) {
      std::cout << (first ? "" : ", ") << json_string(key) << ": " << json_number(value);
      first = false;
    }
    if (report) std::cout << (first ? "" : ", ") << report->json_members();
    std::cout << "}\n";
  } else {
    std::cout << logs.to_string() << "\n";
    if (report) std::cout << "\n" << report->to_string();
  }
  return 0;
}

int run_predict(Invocation& inv) {
  // The run's settings (FILE.ini) name the training data: the data to predict on must be named here.
  if (!inv.data_on_command_line()) {
    std::string hint = "--data FILE.csv, or --dataset NAME with its options";
    if (!inv.dataset.empty() && inv.dataset != "csv") hint = "--dataset " + inv.dataset + " with its options";
    if (inv.dataset == "fashion_mnist") hint += " (e.g. --fashion_mnist.split test)";
    throw ConfigError("'torchfit predict' needs the data to predict on: " + hint);
  }
  const fs::path output = required(inv, "output", "FILE.csv (where to write the predictions)");
  check_writable_parent(output, "output file");
  const auto device = parse_device(inv.options["device"].as<std::string>());
  Setup s = set_up(inv, Purpose::Predict, false);
  load_weights(s.net, inv.options["ckpt-path"].as<std::string>(), s.name);
  Trainer trainer(s.net, s.model->make_loss());
  trainer.to(device);
  const auto outputs = trainer.predict(eval_loader(s, s.train));
  const auto predictions = s.model->to_predictions(outputs);
  write_csv(output, predictions.columns, predictions.values);
  std::cout << "wrote " << predictions.values.size(0) << " predictions (" ;
  for (size_t i = 0; i < predictions.columns.size(); ++i) std::cout << (i ? ", " : "") << predictions.columns[i];
  std::cout << ") to " << output.string() << "\n";
  return 0;
}

int run_export(Invocation& inv) {
  const fs::path output = required(inv, "output", "FILE (where to write the weights)");
  // A torchscript model's module is written whole (code and weights); any net's weights alone otherwise.
  std::string format = inv.has("format") ? inv.options["format"].as<std::string>() : "";
  if (format.empty()) {
    if (output.extension() != ".safetensors") {
      throw ConfigError("'torchfit export' needs --format libtorch, state_dict, safetensors or torchscript (only a "
                        "FILE ending in .safetensors says it alone)");
    }
    format = "safetensors";
  }
  if (format != "libtorch" && format != "state_dict" && format != "safetensors" && format != "torchscript") {
    throw ConfigError("--format must be libtorch, state_dict, safetensors or torchscript (the torchscript model's "
                      "module), got '" + format + "'");
  }
  check_writable_parent(output, "output file");
  const std::string name = required(inv, "model", "NAME");
  const auto& entry = inv.registry->find(name, PluginKind::Model);
  const auto model = inv.registry->make_model(name, inv.plugin_options(entry));
  Net net = model->make_net();
  const fs::path ckpt = inv.options["ckpt-path"].as<std::string>();
  const auto info = load_weights(net, ckpt, name);
  const std::string epoch = info.logs.get("epoch") ? format_value(*info.logs.get("epoch")) : std::string("?");
  if (format == "torchscript") {
    model->save_torchscript(net, output);
  } else {
    export_weights(net, output, parse_weights_format(format, "--format"),
                   {{"format", "pt"}, {"torchfit_model", name}, {"torchfit_epoch", epoch}});
  }
  const auto tensors = named_tensors(net);
  std::cout << "wrote " << output.string() << " (" << format << "): the " << tensors.size() << " tensors of model "
            << name << ", the weights of epoch " << epoch << " in " << ckpt.string() << "\n";
  return 0;
}

int run_summary(Invocation& inv) {
  Setup s = set_up(inv, Purpose::Summary, false);
  if (!s.dataset) {
    std::cout << summary(s.net, static_cast<const TensorDataset&>(*s.train).features().narrow(0, 0, 1));
    return 0;
  }
  // One sample as the net sees it (after the dataset's transforms): exact shapes.
  std::cout << summary(s.net, DataLoader(s.train, LoaderOptions(1).transforms(s.eval_transforms)).epoch(0).batch(0));
  return 0;
}

int run_plugins(Invocation& inv, bool plain) {
  const auto& reg = *inv.registry;
  std::vector<FolderListing> folders;
  for (const auto& dir : reg.dirs()) {
    std::error_code ec;
    FolderListing f{dir, fs::is_directory(dir, ec), {}, {}};
    for (const auto& p : reg.plugins()) {
      if (p.file.parent_path() != dir) continue;
      f.plugins.push_back({kind_name(p.info.kind), p.info.name, p.info.version, p.info.description,
                           p.file.filename().string()});
    }
    for (const auto& s : reg.skipped()) {
      if (s.file.parent_path() == dir) f.refused.push_back({s.file.filename().string(), s.reason, s.is_plugin});
    }
    folders.push_back(std::move(f));
  }
  if (inv.options["update-index"].as<bool>()) {
    bool failed = false;
    for (const auto& f : folders) {
      if (!f.exists) continue;
      const auto file = f.folder / kIndexFileName;
      if (read_folder_index(f.folder)) {
        std::cout << "up to date: " << file.string() << "\n";
      } else if (const auto error = write_index(f, file); error.empty()) {
        std::cout << "wrote " << file.string() << " (" << f.plugins.size() << (f.plugins.size() == 1 ? " plugin" : " plugins")
                  << ")\n";
      } else {
        std::cerr << "torchfit: error: " << error
                  << " (until the folder's owner runs this command, listing it loads its plugins; your own "
                     "listings of it are still cached, under $XDG_CACHE_HOME/torchfit or ~/.cache/torchfit)\n";
        failed = true;
      }
    }
    return failed ? 1 : 0;
  }
  std::cout << format_listing(folders, spdlog::should_log(spdlog::level::debug));
  if (plain) {
    for (const auto& f : folders) {
      if (f.exists && !read_index(f.folder)) {
        if (const auto file = user_index_file(f.folder); !file.empty()) write_index(f, file);
      }
    }
  }
  return 0;
}

}  // namespace torchfit::cli
