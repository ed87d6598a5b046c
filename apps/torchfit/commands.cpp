// The runner's commands: train, evaluate, predict, summary, plugins.
#include "commands.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <torchfit/torchfit.hpp>

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

template <typename T>
T positive(const Invocation& inv, const std::string& key) {
  const T v = inv.options[key].as<T>();
  if (!(v > 0)) throw ConfigError("--" + key + " must be positive, got " + format_value(static_cast<double>(v)));
  return v;
}

void set_option(Invocation& inv, const std::string& key, boost::any value) {
  inv.options.erase(key);
  inv.options.insert({key, po::variable_value(std::move(value), false)});
}

// How to read the user's CSV files: --target, --features, --delimiter, --missing.
CsvOptions csv_options(const Invocation& inv) {
  CsvOptions o;
  o.delimiter = parse_csv_delimiter(inv.options["delimiter"].as<std::string>(), "--delimiter");
  o.missing = parse_csv_missing(inv.options["missing"].as<std::string>(), "--missing");
  if (inv.options.count("target")) o.target = inv.options["target"].as<std::string>();
  if (inv.options.count("features")) o.features = inv.options["features"].as<std::string>();
  return o;
}

// A labelled CSV file, with the targets as the model trains on them.
// --workers: "auto" (suggested_workers) or a count from 0 to 64.
int64_t parse_workers(const std::string& value, const Dataset& data, const LoaderOptions& options) {
  if (value == "auto") return suggested_workers(data, options);
  size_t used = 0;
  int64_t n = -1;
  try {
    n = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || n < 0 || n > 64) {
    throw ConfigError("--workers takes auto or a number of threads from 0 to 64, got '" + value + "'");
  }
  return n;
}

TensorDataset read_labelled(ModelPlugin& model, const fs::path& file, const CsvOptions& options) {
  if (options.target.empty()) {
    std::string first_line;
    std::ifstream in(file);
    std::getline(in, first_line);
    if (first_line.size() > 200) first_line = first_line.substr(0, 200) + "...";
    throw ConfigError("--data needs --target COLUMN: the column to predict, a header name or a 1-based index" +
                      (first_line.empty() ? std::string() : " (" + file.string() + " begins: " + first_line + ")"));
  }
  const auto csv = read_csv(file, options);
  return TensorDataset(csv.features, model.make_targets(csv.targets, file.string()));
}

enum class Purpose { Train, Evaluate, Predict, Summary };

// The model, its net and data, and the metrics: what every command but plugins needs.
struct Setup {
  std::string name;
  std::shared_ptr<ModelPlugin> model;
  const PluginEntry* entry = nullptr;
  Net net;
  DataSplits data;
  Metrics metrics;
  int64_t batch_size = 0;
  uint64_t seed = 0;
};

// The run's data: the model's own, or the user's CSV files (--data, --val-data or --val-split).
DataSplits user_or_model_data(Invocation& inv, Setup& s, Purpose purpose) {
  if (!inv.has("data")) {
    for (const char* key : {"val-data", "target", "features"}) {
      if (purpose == Purpose::Train && inv.has(key)) {
        throw ConfigError(std::string("--") + key + " goes with --data FILE.csv (the model's own data has none)");
      }
    }
    return s.model->make_data(s.seed);
  }
  const auto csv = csv_options(inv);
  const fs::path data = inv.options["data"].as<std::string>();
  if (purpose == Purpose::Evaluate && inv.on_command_line("data")) return {{}, read_labelled(*s.model, data, csv)};
  if (purpose == Purpose::Summary && csv.target.empty()) {
    return {TensorDataset(read_csv(data, csv).features), {}};
  }
  // Train's own options; evaluate finds them in the run's settings (FILE.ini).
  auto train_option = [&](const std::string& key) -> std::optional<std::string> {
    if (purpose != Purpose::Train) return inv.config_value(key);
    return inv.has(key) ? std::optional(inv.options[key].as<std::string>()) : std::nullopt;
  };
  auto all = read_labelled(*s.model, data, csv);
  DataSplits splits;
  if (const auto val_data = train_option("val-data")) {
    splits = {all, read_labelled(*s.model, *val_data, csv)};
  } else {
    double f = 0.2;
    if (purpose == Purpose::Train) {
      f = inv.options["val-split"].as<double>();
    } else if (const auto text = train_option("val-split")) {
      try {
        f = std::stod(*text);
      } catch (const std::exception&) {
        throw ConfigError("val-split in the run's settings is not a number: '" + *text + "'");
      }
    }
    if (!(f > 0 && f < 1)) {
      throw ConfigError("--val-split must be between 0 and 1 (the fraction held out for validation), got " +
                        format_value(f) + "; or give --val-data FILE.csv");
    }
    const auto val = static_cast<int64_t>(std::llround(f * static_cast<double>(all.size())));
    if (val < 1 || val >= all.size()) {
      throw DataError("--val-split " + format_value(f) + " of " + std::to_string(all.size()) + " rows of " +
                      data.string() + " leaves " + (val < 1 ? "no validation rows" : "no training rows") +
                      "; give more data or another fraction");
    }
    auto parts = random_split(all, std::vector<int64_t>{all.size() - val, val}, s.seed);
    splits = {parts[0], parts[1]};
  }
  return splits;
}

Setup set_up(Invocation& inv, Purpose purpose, bool with_metrics) {
  Setup s;
  s.name = required(inv, "model", "NAME");
  s.entry = &inv.registry->find(s.name, PluginKind::Model);
  s.model = inv.registry->make_model(s.name, inv.plugin_options(*s.entry));
  s.seed = inv.options.count("seed") ? inv.options["seed"].as<uint64_t>() : 2;
  s.batch_size = inv.options.count("batch-size") ? positive<int64_t>(inv, "batch-size") : s.model->default_batch_size();
  seed_everything(s.seed);
  if (purpose != Purpose::Predict) s.data = user_or_model_data(inv, s, purpose);
  if (inv.has("data") && (purpose == Purpose::Train || purpose == Purpose::Summary)) {
    s.model->adapt(s.data.train);
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

std::shared_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, const std::vector<torch::Tensor>& params,
                                                        double lr, double momentum, double weight_decay) {
  if (name == "adam") {
    return std::make_shared<torch::optim::Adam>(params, torch::optim::AdamOptions(lr).weight_decay(weight_decay));
  }
  if (name == "adamw") {
    return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
  }
  if (name == "sgd") {
    return std::make_shared<torch::optim::SGD>(
        params, torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
  }
  const auto guess = closest_name(name, {"adam", "adamw", "sgd"});
  throw ConfigError("unknown optimizer '" + name + "'" + (guess.empty() ? "" : "; did you mean '" + guess + "'?") +
                    " Optimizers: adam, adamw, sgd");
}

}  // namespace

int run_train(Invocation& inv) {
  const auto epochs = positive<int64_t>(inv, "epochs");
  const auto accumulate = positive<int64_t>(inv, "accumulate");
  const double clip = inv.options["clip-grad-norm"].as<double>();
  if (clip < 0) throw ConfigError("--clip-grad-norm must be 0 (off) or positive, got " + format_value(clip));
  const double clip_value = inv.options["clip-grad-value"].as<double>();
  if (clip_value < 0) {
    throw ConfigError("--clip-grad-value must be 0 (off) or positive, got " + format_value(clip_value));
  }
  if (inv.has("mode")) parse_monitor_mode(inv.options["mode"].as<std::string>(), "--mode");
  if (inv.has("patience") && inv.options["patience"].as<int64_t>() < 0) {
    throw ConfigError("--patience must be 0 or more, got " + std::to_string(inv.options["patience"].as<int64_t>()));
  }
  const fs::path history_path = inv.options["history"].as<std::string>();
  const fs::path ckpt_path = inv.options["ckpt-path"].as<std::string>();
  const fs::path config_path = ckpt_path.string() + ".ini";
  const fs::path state_path = ckpt_path.string() + ".state";
  check_writable_parent(history_path, "history file");
  check_writable_parent(config_path, "checkpoint path");
  const auto device = parse_device(inv.options["device"].as<std::string>());
  const auto precision = parse_precision(inv.options["precision"].as<std::string>());
  { AutocastGuard check(precision, device); }  // 16-mixed on a CPU: refused before any file is written
  const auto state_every = inv.options["state-every-steps"].as<int64_t>();
  if (state_every < 0) {
    throw ConfigError("--state-every-steps must be 0 (after every epoch only) or positive, got " +
                      std::to_string(state_every));
  }
  const bool resuming = !inv.resume_state.empty();
  const auto& saved = inv.resume_info;
  if (resuming && (saved.stopped || (saved.finished && epochs <= saved.epochs_done))) {
    std::cout << "nothing to resume: the run in " << inv.resume_state << " already ended after " << saved.epochs_done
              << " epochs (" << (saved.stopped ? saved.stop_reason : "completed " + std::to_string(saved.epochs_done) + " epochs")
              << ")" << (saved.stopped ? "" : "; give a larger --epochs to train it further") << "\n";
    return 0;
  }

  // Data-parallel: --nproc N starts N workers running this same command; a worker (WORLD_SIZE
  // set, by the launcher or by hand on each machine) joins the others.
  const auto nproc = inv.options["nproc"].as<int64_t>();
  const auto dist_timeout = inv.options["dist-timeout"].as<int64_t>();
  if (nproc < 1 || nproc > 1024) throw ConfigError("--nproc must be from 1 to 1024, got " + std::to_string(nproc));
  if (dist_timeout < 1) throw ConfigError("--dist-timeout must be at least 1 second, got " + std::to_string(dist_timeout));
  auto dist = distributed_from_env();
  if (!dist && nproc > 1) {
    if (!distributed_available()) {
      throw ConfigError("--nproc needs c10d's Gloo backend, which this torchfit was built without (install "
                        "libgloo-dev and rebuild)");
    }
    return launch_workers(inv.argc, inv.argv, static_cast<int>(nproc), std::chrono::seconds(dist_timeout + 5));
  }
  std::shared_ptr<Communicator> comm;
  if (dist && dist->world_size > 1) {
    if (inv.has("nproc") && nproc != dist->world_size) {
      throw ConfigError("--nproc " + std::to_string(nproc) + " but WORLD_SIZE is " + std::to_string(dist->world_size));
    }
    dist->timeout = std::chrono::seconds(dist_timeout);
    comm = connect(*dist);
    logger("runner")->info("<<<<<< data-parallel: {} processes (c10d Gloo via {}:{}), {} threads each >>>>>>",
                           dist->world_size, dist->master_addr, dist->master_port, torch::get_num_threads());
  }
  const bool rank0 = !comm || comm->rank() == 0;

  Setup s = set_up(inv, Purpose::Train, true);
  const auto defaults = s.model->default_optimizer();
  const auto optimizer_name = inv.options.count("optimizer") ? inv.options["optimizer"].as<std::string>() : defaults.name;
  const double lr = inv.options.count("lr") ? positive<double>(inv, "lr") : defaults.lr;
  auto optimizer = make_optimizer(optimizer_name, s.net.parameters(), lr, inv.options["momentum"].as<double>(),
                                  inv.options["weight-decay"].as<double>());

  Callbacks callbacks;
  std::vector<const PluginEntry*> plugins{s.entry};
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
  auto train_options = LoaderOptions(s.batch_size).shuffle(true).seed(s.seed).pin_memory(pin);
  const int64_t workers = parse_workers(inv.options["workers"].as<std::string>(), s.data.train, train_options);
  if (rank0) atomic_write_text(config_path, [&](std::ostream& out) { out << settings; });
  install_stop_signal_handlers();

  Trainer trainer(s.net, s.model->make_loss(), s.metrics, optimizer);
  DataLoader train(s.data.train, train_options.workers(workers));
  DataLoader val(s.data.val, LoaderOptions(s.batch_size).pin_memory(pin).workers(workers));
  auto save_history = [&](const History& h) {
    if (history_path.extension() == ".json") {
      h.to_json(history_path);
    } else {
      h.to_csv(history_path);
    }
  };
  History history;
  try {
    auto options = FitOptions()
                       .epochs(epochs)
                       .callbacks(callbacks)
                       .device(device)
                       .accumulate(accumulate)
                       .clip_grad_norm(clip)
                       .clip_grad_value(clip_value)
                       .state_path(state_path)
                       .state_every_steps(state_every)
                       .run_config(settings)
                       .communicator(comm)
                       .precision(precision);
    if (resuming) options.resume_from(inv.resume_state);
    history = trainer.fit(train, val, options);
  } catch (...) {
    if (rank0 && !trainer.history().empty()) {
      save_history(trainer.history());
      logger("runner")->warn("the {} finished epochs are saved in {}", trainer.history().size(), history_path.string());
    }
    throw;
  }
  if (!rank0) return trainer.interrupted_by() ? 128 + trainer.interrupted_by() : 0;  // rank 0 reports
  save_history(history);
  if (const int signal = trainer.interrupted_by()) {
    std::string again = "torchfit train --resume";
    if (!inv.options["ckpt-path"].defaulted()) again += " --ckpt-path " + ckpt_path.string();
    std::cout << "\n" << history.tail(5) << "\n";
    std::cout << "interrupted by " << signal_name(signal) << " after " << history.size()
              << " complete epochs; the training state is saved in " << state_path.string() << "\n"
              << "continue with: " << again << "\n";
    return 128 + signal;
  }

  std::cout << "\n" << history.tail(5) << "\n";
  std::cout << "stopped: " << history.stop_reason() << "\n";
  const std::string monitor = inv.has("monitor") ? inv.options["monitor"].as<std::string>() : "val_loss";
  bool higher = trainer.higher_is_better(monitor).value_or(false);
  if (inv.has("mode") && inv.options["mode"].as<std::string>() != "auto") {
    higher = inv.options["mode"].as<std::string>() == "max";
  }
  const auto best = history.best_row(monitor, higher);
  if (best) {
    std::cout << "best " << monitor << ": " << format_value(*history[*best].get(monitor)) << " (epoch "
              << format_value(history[*best].at("epoch")) << ")\n";
  }
  std::vector<std::pair<std::string, std::string>> files;
  std::error_code ec;
  if (std::find(inv.callbacks.begin(), inv.callbacks.end(), "model_checkpoint") != inv.callbacks.end() &&
      fs::exists(ckpt_path, ec)) {
    const auto info = read_checkpoint_info(ckpt_path);
    std::string what = "weights of epoch " + format_value(info.logs.get("epoch").value_or(0));
    if (auto v = info.logs.get(monitor)) what += " (" + monitor + " " + format_value(*v) + ")";
    files.emplace_back(ckpt_path.string(), what);
  }
  files.emplace_back(history_path.string(), "history, " + std::to_string(history.size()) + " epochs");
  files.emplace_back(config_path.string(),
                     "settings of this run; 'torchfit train --config " + config_path.string() + "' repeats it");
  files.emplace_back(state_path.string(), "full training state; 'torchfit train --resume' continues the run");
  size_t width = 0;
  for (const auto& f : files) width = std::max(width, f.first.size());
  std::cout << "files:\n";
  for (const auto& [file, what] : files) {
    std::cout << "  " << file << std::string(width - file.size() + 2, ' ') << what << "\n";
  }
  return 0;
}

int run_evaluate(Invocation& inv) {
  const auto device = parse_device(inv.options["device"].as<std::string>());
  Setup s = set_up(inv, Purpose::Evaluate, true);
  load_weights(s.net, inv.options["ckpt-path"].as<std::string>(), s.name);
  Trainer trainer(s.net, s.model->make_loss(), s.metrics);
  trainer.to(device);
  const auto logs = trainer.evaluate(DataLoader(s.data.val, LoaderOptions(s.batch_size)));
  if (inv.options["json"].as<bool>()) {
    std::cout << "{";
    bool first = true;
    for (const auto& [key, value] : logs) {
      std::cout << (first ? "" : ", ") << '"' << key << "\": " << (std::isfinite(value) ? format_value(value) : "null");
      first = false;
    }
    std::cout << "}\n";
  } else {
    std::cout << logs.to_string() << "\n";
  }
  return 0;
}

int run_predict(Invocation& inv) {
  // The run's settings (FILE.ini) hold the training data's name: the file to predict on must
  // be named here.
  if (!inv.on_command_line("data")) {
    throw ConfigError("'torchfit predict' needs --data FILE.csv (the features to predict on)");
  }
  const fs::path input = inv.options["data"].as<std::string>();
  const fs::path output = required(inv, "output", "FILE.csv (where to write the predictions)");
  check_writable_parent(output, "output file");
  const auto device = parse_device(inv.options["device"].as<std::string>());
  Setup s = set_up(inv, Purpose::Predict, false);
  load_weights(s.net, inv.options["ckpt-path"].as<std::string>(), s.name);
  auto csv = csv_options(inv);
  csv.ignore_target = true;
  csv.expected_features = s.model->input_features();
  const auto table = read_csv(input, csv);
  Trainer trainer(s.net, s.model->make_loss());
  trainer.to(device);
  const auto outputs = trainer.predict(table.features, s.batch_size);
  const auto predictions = s.model->to_predictions(outputs);
  write_csv(output, predictions.columns, predictions.values);
  std::cout << "wrote " << predictions.values.size(0) << " predictions (" ;
  for (size_t i = 0; i < predictions.columns.size(); ++i) std::cout << (i ? ", " : "") << predictions.columns[i];
  std::cout << ") to " << output.string() << "\n";
  return 0;
}

int run_summary(Invocation& inv) {
  Setup s = set_up(inv, Purpose::Summary, false);
  std::cout << summary(s.net, s.data.train.features().narrow(0, 0, 1));
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
