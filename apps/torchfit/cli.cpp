// The runner's command line: commands, options, config files and plugin option routing.
#include "cli.hpp"

#include <boost/make_shared.hpp>

#include <algorithm>
#include <map>
#include <fstream>
#include <set>
#include <iomanip>
#include <limits>
#include <sstream>

#include <torchfit/dataset_plugin.hpp>
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/logs.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin_path.hpp>
#include <torchfit/text.hpp>

namespace torchfit::cli {

NumberRange val_split_range() {
  auto range = NumberRange::between(0, 1, true, true);
  range.what += ": the fraction held out for validation";
  return range;
}

namespace {

const char* const kDefaultCallbacks = "early_stopping,model_checkpoint,progress_bar,lr_monitor";

// The names in a list option ("a, b,"): torchfit's one list splitter, blank items (a trailing
// comma) skipped.
std::vector<std::string> names_in(const std::string& text) {
  auto items = split_list(text);
  items.erase(std::remove(items.begin(), items.end(), std::string()), items.end());
  return items;
}

po::options_description general_options() {
  po::options_description d("General options");
  d.add_options()                                                                                 //
      ("help,h", "show this help (with the options of the plugins the command would load)")         //
      ("config", po::value<std::string>()->value_name("FILE"),
       "INI file with the same option names (plugin options under [plugin] sections); the command line wins")  //
      ("plugin-dir", po::value<std::vector<std::string>>()->value_name("DIR")->composing(),
       "also search DIR for plugins (repeatable; TORCHFIT_PLUGIN_PATH adds more)")  //
      ("log-level", po::value<std::string>()->value_name("LEVEL")->default_value("info"),
       "trace, debug, info, warn, error or off (debug also shows error details)");
  return d;
}

void add_model_options(po::options_description& d, bool train) {
  d.add_options()                                                                            //
      ("model", po::value<std::string>()->value_name("NAME"), "model plugin (torchfit plugins lists them)")  //
      ("seed", po::value<uint64_t>()->default_value(2), "seeds the data, the split, the weights and the shuffle")  //
      ("device", po::value<std::string>()->default_value("auto"), "auto, cpu, cuda or cuda:N")  //
      ("threads", po::value<std::string>()->value_name("N")->default_value("auto"),
       "threads for the net's CPU kernels (LibTorch's intra-op threads); auto: OMP_NUM_THREADS when set, else "
       "one per core")  //
      ("batch-size", number<int64_t>(NumberRange::positive())->value_name("N"), "samples per batch (default: the model's)")  //
      ("metrics", po::value<std::string>()->value_name("LIST"),
       train ? "comma-separated metric names (default: the model's; torchfit plugins lists them)"
             : "metrics to report (default: those of the run, or the model's)");
}

// The user's CSV data (docs/data.md). Train records them in FILE.ini, so evaluate and predict
// read their files the same way.
void add_data_options(po::options_description& d, const std::string& command) {
  const char* data_text =
      command == "train"      ? "train on this CSV file instead of the model's own data (needs --target)"
      : command == "evaluate" ? "evaluate on every row of this CSV file (default: the run's validation data)"
      : command == "predict"  ? "the CSV file to predict on, one row per sample (its target column, if any, is ignored)"
                              : "a CSV file of the model's input, to size the net from (the mlp model needs one)";
  const char* dataset_text =
      command == "train"      ? "dataset plugin to train on (torchfit plugins lists them; its options: --<dataset>.<option>); "
                                "default: the model's own data, or csv with --data"
      : command == "evaluate" ? "evaluate on all of this dataset (with its options; default: the run's validation data)"
      : command == "predict"  ? "the dataset to predict on, one row per sample (its labels, if any, are ignored)"
                              : "a dataset to size the net from (default: the model's own data)";
  d.add_options()("dataset", po::value<std::string>()->value_name("NAME"), dataset_text);
  d.add_options()("data", po::value<std::string>()->value_name("FILE.csv"), data_text);
  if (command == "train") {
    d.add_options()                                                                            //
        ("val-data", po::value<std::string>()->value_name("FILE.csv"), "validation data (default: --val-split of --data)")  //
        ("val-split", number<double>(val_split_range())->value_name("F")->default_value(0.2, "0.2"),
         "fraction of the data held out for validation (seeded) when the dataset has no validation data of its "
         "own (--val-data)");
  }
  add_csv_column_options(d);
}

po::options_description data_options(const std::string& command) {
  po::options_description d("Data options (--dataset NAME, or a CSV file: --data is --dataset csv --csv.data; docs/data.md)");
  add_data_options(d, command);
  return d;
}

bool takes_data(const std::string& command) {
  return command == "train" || command == "evaluate" || command == "predict" || command == "summary";
}

po::options_description command_options(const std::string& command) {
  po::options_description d(command + " options");
  if (command == "train") {
    add_model_options(d, true);
    d.add_options()                                                                                    //
        ("epochs", number<int64_t>(NumberRange::positive())->default_value(10), "epochs to train at most")                   //
        ("lr", number<double>(NumberRange::positive().up_to(std::numeric_limits<float>::max(), "float32's largest")), "learning rate (default: the model's)")                             //
        ("optimizer", po::value<std::string>(), "adam, adamw or sgd (default: the model's)")            //
        ("momentum", number<double>(NumberRange::at_least(0))->default_value(0.9, "0.9"), "momentum for sgd")                        //
        ("weight-decay", number<double>(NumberRange::at_least(0, "(0: none)"))->default_value(0.0), "weight decay (L2; decoupled for adamw)")  //
        ("callbacks", po::value<std::string>()->value_name("LIST")->default_value(kDefaultCallbacks),
         "comma-separated callback plugins, run in this order; 'none' for none")  //
        ("patience", number<int64_t>(NumberRange::at_least(0)), "shortcut for early_stopping.patience (default 5)")  //
        ("monitor", po::value<std::string>(),
         "value the callbacks watch: early_stopping.monitor and model_checkpoint.monitor (default val_loss)")  //
        ("mode", one_of({"min", "max", "auto"}), "for the monitored value (default auto: from its loss or metric)")  //
        ("ckpt-path", po::value<std::string>()->value_name("FILE")->default_value("checkpoint"),
         "best-weights file (model_checkpoint.ckpt-path); the run's settings go to FILE.ini, its full "
         "training state (for --resume) to FILE.state")  //
        ("history", po::value<std::string>()->value_name("FILE")->default_value("history.csv"),
         "where to write the history: CSV, or JSON when FILE ends in .json")  //
        ("accumulate", number<int64_t>(NumberRange::positive())->default_value(1), "gradient accumulation: batches per optimizer step")  //
        ("clip-grad-norm", number<double>(NumberRange::at_least(0, "(0: off)"))->default_value(0.0), "clip the gradients' L2 norm to this (0: off)")  //
        ("precision", po::value<std::string>()->value_name("P")->default_value("32"),
         "32, bf16-mixed (autocast to bfloat16; CPU or CUDA) or 16-mixed (float16 with loss scaling; CUDA)")  //
        ("pin-memory", po::value<bool>()->value_name("BOOL")->default_value(false)->implicit_value(true),
         "on a GPU: keep the data in pinned host memory and copy each batch asynchronously, for data larger "
         "than the GPU's memory (default: the data is copied to the GPU once)")  //
        ("workers", po::value<std::string>()->value_name("N")->default_value("auto"),
         "threads that gather the next batches while the net trains; auto: none for in-memory data, else half "
         "the cores (1 to 4); the same results for any number")  //
        ("clip-grad-value", number<double>(NumberRange::at_least(0, "(0: off)"))->default_value(0.0),
         "clamp every gradient element to [-X, X] (0: off)")  //
        ("resume", po::value<std::string>()->value_name("STATE")->implicit_value(""),
         "continue the interrupted run saved in FILE.state (of --ckpt-path), or in STATE; its saved settings "
         "apply, and options that would change the result are refused")  //
        ("state-every-steps", number<int64_t>(NumberRange::at_least(0, "(0: after every epoch only)"))->value_name("N")->default_value(0),
         "also save the training state (FILE.state) every N optimizer steps; 0: after every epoch only")  //
        ("nproc", number<int64_t>(NumberRange::between(1, 1024))->value_name("N")->default_value(1),
         "data-parallel training over N processes on this machine (c10d, Gloo); --batch-size is per process. "
         "Across machines, start one process each with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set")  //
        ("dist-timeout", number<int64_t>(NumberRange::at_least(1))->value_name("SECONDS")->default_value(120),
         "data-parallel: how long a process waits for the others (rendezvous, each collective) before failing")  //
        ("no-preflight", po::value<bool>()->value_name("BOOL")->default_value(false)->implicit_value(true),
         "skip the check before epoch 1: one batch through training and validation and a state save, undone "
         "after (it finds in a second what would fail after a whole epoch; docs/reliability.md)")  //
        ("init-weights", po::value<std::string>()->value_name("FILE"),
         "start from these weights instead of random ones: a torchfit checkpoint, a LibTorch archive, a PyTorch "
         "state_dict (torch.save) or safetensors; tensors are matched by name (docs/deploy.md)")  //
        ("init-weights-strict", po::value<bool>()->value_name("BOOL")->default_value(false)->implicit_value(true),
         "refuse --init-weights unless its names are exactly the net's")  //
        ("freeze", po::value<std::string>()->value_name("PATTERNS"),
         "keep these parameters fixed: comma-separated names, prefixes (features) or globs (*.bias); the unfreeze "
         "callback releases them later")  //
        ("lr-groups", po::value<std::string>()->value_name("PATTERN=LR,..."),
         "learning rates of their own for the parameters matching each pattern (features=1e-4,head=1e-3); the "
         "rest train at --lr")  //
        ("quiet,q", po::bool_switch(), "no progress display or messages; only the final table");
  } else if (command == "export") {
    d.add_options()  //
        ("model", po::value<std::string>()->value_name("NAME"), "model plugin (default: the run's, from FILE.ini)")  //
        ("ckpt-path", po::value<std::string>()->value_name("FILE")->default_value("checkpoint"),
         "weights to export (FILE.ini, written by train, supplies the run's settings)")  //
        ("output", po::value<std::string>()->value_name("FILE"), "where to write them")  //
        ("format", po::value<std::string>()->value_name("F"),
         "libtorch (torch::load in any LibTorch program), state_dict (torch.load in Python) or safetensors; "
         "default: safetensors for a FILE ending in .safetensors");
  } else if (command == "evaluate") {
    add_model_options(d, false);
    d.add_options()  //
        ("ckpt-path", po::value<std::string>()->value_name("FILE")->default_value("checkpoint"),
         "weights to evaluate (FILE.ini, written by train, supplies the run's settings)")  //
        ("json", po::bool_switch(), "print one JSON object instead of key=value pairs");
  } else if (command == "predict") {
    add_model_options(d, false);
    d.add_options()  //
        ("ckpt-path", po::value<std::string>()->value_name("FILE")->default_value("checkpoint"),
         "weights to predict with (FILE.ini, written by train, supplies the run's settings)")  //
        ("output", po::value<std::string>()->value_name("FILE.csv"), "where to write one prediction row per input row");
  } else if (command == "summary") {
    d.add_options()("model", po::value<std::string>()->value_name("NAME"), "model plugin to show");
  } else if (command == "plugins") {
    d.add_options()("update-index", po::bool_switch(),
                    "write each searched folder's plugins.index, so that listing it needs no plugin loaded (run "
                    "it after adding plugins to a shared folder; the build and cmake --install do it for theirs)");
  }
  return d;
}

// Everything the runner itself understands for `command`.
po::options_description runner_options(const std::string& command) {
  po::options_description d;
  d.add(command_options(command));
  if (takes_data(command)) d.add(data_options(command));
  d.add(general_options());
  return d;
}

// Every runner option name of every command: keys a config file may hold.
const std::set<std::string>& all_runner_keys() {
  static const std::set<std::string> keys = [] {
    std::set<std::string> k;
    for (const auto& [command, text] : commands()) {
      const auto options = runner_options(command);
      for (const auto& opt : options.options()) k.insert(opt->long_name());
    }
    k.erase("help");
    return k;
  }();
  return keys;
}

std::string default_text(const po::option_description& opt) {
  const auto param = opt.format_parameter();
  // "LIST (=64,32)"; an implicit value comes first: "[=arg(=1)] (=0)".
  const auto pos = param.rfind(" (=");
  return pos == std::string::npos ? "" : param.substr(pos + 3, param.size() - pos - 4);
}

// A model's options may also be given without the prefix (--task for --mlp.task), unless the
// runner has an option of that name (which then sets the model's, as for every plugin).
bool unprefixed(const PluginEntry& entry, const std::string& option, const std::string& command) {
  return entry.info.kind == PluginKind::Model && !runner_options(command).find_nothrow(option, false);
}

// Adds --<plugin>.<option> for each option of the plugin, as text: the plugin parses it. For a
// model, also --<option> (shown that way in help).
void add_plugin_group(po::options_description& all, const PluginEntry& entry, const std::string& command,
                      bool for_help = false) {
  const bool model = entry.info.kind == PluginKind::Model;
  po::options_description group(std::string(kind_name(entry.info.kind)) + " plugin '" + entry.info.name + "' (--" +
                                (model ? "<option> or --" : "") + entry.info.name + ".<option>, or [" +
                                entry.info.name + "] in a config file)");
  for (const auto& opt : entry.info.options->options()) {
    std::vector<std::string> names;
    const bool bare = unprefixed(entry, opt->long_name(), command);
    if (bare) names.push_back(opt->long_name());
    if (!bare || !for_help) names.push_back(entry.info.name + "." + opt->long_name());
    for (const auto& name : names) {
      auto* value = po::value<std::string>();
      const auto param = opt->format_parameter();  // "LIST (=64,32)", "arg", "[=arg(=1)] (=0)"
      const auto value_name = param.substr(0, param.find(" (="));
      if (!value_name.empty() && value_name != "arg" && value_name[0] != '[') value->value_name(value_name);
      const auto def = default_text(*opt);
      if (!def.empty()) value->default_value(def);
      if (opt->semantic()->min_tokens() == 0) value->implicit_value("true");
      group.add(boost::make_shared<po::option_description>(name.c_str(), value, opt->description().c_str()));
    }
  }
  all.add(group);
}

std::vector<std::string> option_names(const po::options_description& d) {
  std::vector<std::string> names;
  for (const auto& opt : d.options()) names.push_back(opt->long_name());
  return names;
}

[[noreturn]] void unknown_option(const std::string& raw, const po::options_description& known, const Registry* registry,
                                 const std::string& command, const std::string& where) {
  std::string name = raw;
  while (!name.empty() && name[0] == '-') name.erase(0, 1);
  if (auto eq = name.find('='); eq != std::string::npos) name.resize(eq);
  std::string msg = where + "unknown option '" + name + "' for '" + command + "'";
  if (registry) {
    if (auto dot = name.find('.'); dot != std::string::npos) {
      const auto plugin = name.substr(0, dot);
      for (const auto& p : registry->plugins()) {
        if (p.info.name == plugin) {
          const auto option = name.substr(dot + 1);
          const auto names = option_names(*p.info.options);
          if (std::find(names.begin(), names.end(), option) != names.end()) {
            throw ConfigError(where + "option '" + name + "' belongs to plugin '" + plugin +
                              "', which this command does not load" +
                              (p.info.kind == PluginKind::Callback ? " (add it to --callbacks)" : ""));
          }
          const auto guess = closest_name(option, names);
          throw ConfigError(where + "plugin '" + plugin + "' has no option '" + option + "'" +
                            (guess.empty() ? "." : "; did you mean '" + plugin + "." + guess + "'?") +
                            " See: torchfit " + command + " --help");
        }
      }
    }
  }
  const auto guess = closest_name(name, option_names(known));
  throw ConfigError(msg + (guess.empty() ? "." : "; did you mean '--" + guess + "'?") + " See: torchfit " + command +
                    " --help");
}

void store_command_line(const std::vector<std::string>& args, const po::options_description& desc, po::variables_map& vm,
                        const Registry* registry, const std::string& command) {
  try {
    // No abbreviations: --epoch must not silently mean --epochs.
    auto parsed = po::command_line_parser(args)
                      .options(desc)
                      .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                      .run();
    for (const auto& opt : parsed.options) {
      if (opt.position_key >= 0) {
        throw ConfigError("unexpected argument '" + opt.value.front() + "'; options start with -- (see: torchfit " +
                          command + " --help)");
      }
    }
    po::store(parsed, vm);
  } catch (const po::unknown_option& e) {
    unknown_option(e.get_option_name(), desc, registry, command, "");
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + " (see: torchfit " + command + " --help)");
  }
}

std::string text_of(const boost::any& value) {
  if (value.empty()) return "";
  if (auto* v = boost::any_cast<std::string>(&value)) return *v;
  if (auto* v = boost::any_cast<int64_t>(&value)) return std::to_string(*v);
  if (auto* v = boost::any_cast<uint64_t>(&value)) return std::to_string(*v);
  if (auto* v = boost::any_cast<int>(&value)) return std::to_string(*v);
  if (auto* v = boost::any_cast<unsigned>(&value)) return std::to_string(*v);
  if (auto* v = boost::any_cast<bool>(&value)) return *v ? "true" : "false";
  if (auto* v = boost::any_cast<double>(&value)) return format_exact(*v);
  if (auto* v = boost::any_cast<std::vector<std::string>>(&value)) {
    std::string out;
    for (const auto& item : *v) out += (out.empty() ? "" : ",") + item;
    return out;
  }
  return "";
}

// Options that name a file torchfit writes: the runner's, and a plugin's `path` or `*-path`
// (the convention docs/writing-plugins.md asks plugins to follow).
bool names_a_written_file(const std::string& key) {
  if (key == "history" || key == "ckpt-path" || key == "output") return true;
  const auto dot = key.find('.');
  if (dot == std::string::npos) return false;
  const auto option = key.substr(dot + 1);
  return option == "path" || (option.size() > 5 && option.compare(option.size() - 5, 5, "-path") == 0);
}

// Whether `path` (relative to the working folder) lies inside `folder`, symbolic links resolved.
bool lies_inside(const std::filesystem::path& path, const std::filesystem::path& folder) {
  std::error_code ec;
  const auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec);
  if (ec) return false;
  const auto f = std::filesystem::weakly_canonical(std::filesystem::absolute(folder), ec);
  if (ec) return false;
  auto pi = p.begin();
  for (auto fi = f.begin(); fi != f.end(); ++fi, ++pi) {
    if (fi->empty()) continue;  // the trailing "" of a path ending in '/'
    if (pi == p.end() || *pi != *fi) return false;
  }
  return true;
}

// The files a run left (FILE.ini read beside the checkpoint, the state's settings on --resume)
// may come from anyone who handed over the folder: a file they name for writing must lie in the
// working folder or the run's own folder, or be given again on the command line.
void check_written_files(const Invocation& inv, const std::filesystem::path& run_folder) {
  const auto here = std::filesystem::current_path();
  for (const auto& e : inv.config) {
    if (!names_a_written_file(e.key) || !inv.config_keys.count(e.key) || e.value.empty()) continue;
    if (lies_inside(e.value, here) || lies_inside(e.value, run_folder)) continue;
    throw ConfigError(e.file + ":" + std::to_string(e.line) + " sets " + e.key + " to '" + e.value +
                      "', outside this folder and the run's folder '" + run_folder.string() +
                      "': the files of a run do not choose where torchfit writes. Give --" + e.key + " " + e.value +
                      " on the command line if you mean it");
  }
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& commands() {
  static const std::vector<std::pair<std::string, std::string>> list = {
      {"train", "train a model plugin with callback plugins; writes the best weights and the history"},
      {"evaluate", "load weights and print the validation loss and metrics"},
      {"predict", "load weights and write one prediction row per sample of a dataset or CSV file"},
      {"summary", "print a model's layer table (output shapes, parameter counts, sizes)"},
      {"export", "write a checkpoint's weights for LibTorch, PyTorch or safetensors (docs/deploy.md)"},
      {"plugins", "list every plugin found, with kind, version, description and file"},
  };
  return list;
}

PluginOptions Invocation::plugin_options(const PluginEntry& entry) const {
  std::vector<std::string> args;
  const auto it = plugin_values.find(entry.info.name);
  std::set<std::string> given;
  // A runner option with the same name as a plugin option (--monitor, --patience,
  // --ckpt-path, --data, ...) applies to every loaded plugin that has it, unless set for the
  // plugin; given on the command line, it wins over the plugin's value in a config file.
  auto overrides = [&](const std::string& name) {
    return on_command_line(name) && config_keys.count(entry.info.name + "." + name) > 0;
  };
  if (it != plugin_values.end()) {
    for (const auto& arg : it->second) {
      const auto name = arg.substr(2, arg.find('=') - 2);
      if (overrides(name)) continue;
      args.push_back(arg);
      given.insert(name);
    }
  }
  for (const auto& opt : entry.info.options->options()) {
    const auto& name = opt->long_name();
    if (!given.count(name) && options.count(name) && !options[name].defaulted()) {
      args.push_back("--" + name + "=" + text_of(options[name].value()));
    }
  }
  return registry->parse_options(entry, args);
}

bool Invocation::data_on_command_line() const {
  if (on_command_line("dataset") || on_command_line("data")) return true;
  for (const auto& [key, value] : options) {
    if (!dataset.empty() && key.rfind(dataset + ".", 0) == 0 && on_command_line(key)) return true;
  }
  return false;
}

Invocation parse(int argc, char** argv) {
  Invocation inv;
  inv.argc = argc;
  inv.argv = argv;
  if (argc < 2) {
    throw ConfigError("no command given; run 'torchfit --help' to see the commands");
  }
  inv.command = argv[1];
  bool known = false;
  for (const auto& [name, text] : commands()) known = known || name == inv.command;
  if (!known) {
    std::vector<std::string> names;
    for (const auto& [name, text] : commands()) names.push_back(name);
    const auto guess = closest_name(inv.command, names);
    throw ConfigError("unknown command '" + inv.command + "'" + (guess.empty() ? "" : "; did you mean '" + guess + "'?") +
                      " Commands: train, evaluate, predict, summary, export, plugins");
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  // "--resume PATH" reads as "--resume=PATH" (train takes no positional arguments).
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--resume" && !args[i + 1].empty() && args[i + 1][0] != '-') {
      args[i] += "=" + args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }

  const po::options_description runner = runner_options(inv.command);

  // Pass 1: the runner's own options, to learn the config file, plugin folders and plugins.
  po::variables_map first;
  try {
    po::store(po::command_line_parser(args)
                  .options(runner)
                  .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                  .allow_unregistered()
                  .run(),
              first);
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + " (see: torchfit " + inv.command + " --help)");
  }
  if (inv.command == "train" && first.count("resume")) {
    const auto given = first["resume"].as<std::string>();
    inv.resume_state = given.empty() ? first["ckpt-path"].as<std::string>() + ".state" : given;
    inv.resume_info = read_state_info(inv.resume_state);
  }
  if (first.count("config")) {
    inv.config_file = first["config"].as<std::string>();
  } else if (!inv.resume_state.empty()) {
    // A resume repeats the run's own settings, kept in its state file.
    std::istringstream saved(inv.resume_info.config);
    inv.config = parse_config(saved, inv.resume_state + " (the run's settings)");
  } else if ((inv.command == "evaluate" || inv.command == "predict" || inv.command == "export") &&
             first.count("ckpt-path")) {
    const auto beside = first["ckpt-path"].as<std::string>() + ".ini";
    if (std::ifstream(beside).good()) inv.config_file = beside;
  }
  if (!inv.config_file.empty()) inv.config = read_config(inv.config_file);
  std::vector<std::filesystem::path> dirs;
  if (first.count("plugin-dir")) {
    for (const auto& d : first["plugin-dir"].as<std::vector<std::string>>()) dirs.emplace_back(d);
  }
  // Only what the user names widens where code is loaded from: --plugin-dir,
  // TORCHFIT_PLUGIN_PATH and a --config file. The files a run left (FILE.ini read beside the
  // checkpoint, the state's settings on --resume) may come from anyone who handed over the
  // folder: their plugin-dir is not followed (as torch.load(weights_only=True) runs no code).
  const bool named_config = first.count("config") > 0;
  const auto given = unique_plugin_folders(Registry::search_path(dirs));
  for (const auto& e : inv.config) {
    if (e.key != "plugin-dir") continue;
    for (const auto& d : names_in(e.value)) {
      if (named_config) {
        dirs.emplace_back(d);
      } else if (std::find(given.begin(), given.end(), unique_plugin_folders({d}).front()) == given.end()) {
        std::string searched;
        for (const auto& g : given) searched += (searched.empty() ? "" : ", ") + g.string();
        logger("runner")->warn("not loading plugins from '{}' ({}:{} sets plugin-dir): the files of a run do not "
                               "choose where code is loaded from; searching {} only. Give --plugin-dir {} if you "
                               "trust that folder",
                               d, e.file, e.line, searched, d);
      }
    }
  }
  inv.registry = std::make_unique<Registry>(Registry::search_path(dirs));

  // Which plugins this command loads: their options join the command's.
  std::vector<const PluginEntry*> loaded;
  auto value_of = [&](const std::string& key) -> std::optional<std::string> {
    if (first.count(key) && !first[key].defaulted()) return text_of(first[key].value());
    if (auto v = inv.config_value(key)) return v;
    if (first.count(key)) return text_of(first[key].value());
    return std::nullopt;
  };
  const bool wants_help = first.count("help") > 0;
  if (auto model = value_of("model"); model && inv.command != "plugins") {
    try {
      loaded.push_back(&inv.registry->find(*model, PluginKind::Model));
    } catch (const PluginError&) {
      if (!wants_help) throw;
    }
  }
  if (takes_data(inv.command)) {
    // --data FILE.csv is the csv dataset's file: it names that dataset unless another is given.
    if (auto dataset = value_of("dataset")) {
      inv.dataset = *dataset;
    } else if (value_of("data")) {
      inv.dataset = "csv";
    }
    if (!inv.dataset.empty()) {
      try {
        loaded.push_back(&inv.registry->find(inv.dataset, PluginKind::Dataset));
      } catch (const PluginError&) {
        if (!wants_help) throw;
      }
    }
  }
  if (inv.command == "train") {
    const auto list = value_of("callbacks").value_or(kDefaultCallbacks);
    if (list != "none") inv.callbacks = names_in(list);
    const bool quiet = (first.count("quiet") && first["quiet"].as<bool>()) || inv.config_value("quiet") == "true";
    std::vector<std::string> kept;
    for (size_t i = 0; i < inv.callbacks.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (inv.callbacks[i] == inv.callbacks[j]) {
          throw ConfigError("callback '" + inv.callbacks[i] + "' is listed twice in --callbacks");
        }
      }
      const auto& entry = inv.registry->find(inv.callbacks[i], PluginKind::Callback);
      if (quiet && entry.info.progress_display) continue;  // --quiet: no progress display
      loaded.push_back(&entry);
      kept.push_back(inv.callbacks[i]);
    }
    inv.callbacks = std::move(kept);
  }
  if (auto metrics = value_of("metrics"); metrics && inv.command != "summary" && inv.command != "plugins") {
    inv.metrics = names_in(*metrics);
  }
  if (inv.command == "train" || inv.command == "evaluate") {
    // The metric plugins behind the named metrics (or all metric plugins, for the model's defaults).
    std::vector<std::string> names = inv.metrics;
    if (names.empty()) names = inv.registry->names(PluginKind::Metric);
    for (const auto& m : names) {
      const auto* entry = &inv.registry->find(m, PluginKind::Metric);
      if (std::find(loaded.begin(), loaded.end(), entry) == loaded.end()) loaded.push_back(entry);
    }
  }

  // Pass 2: everything, strictly.
  po::options_description all;
  all.add(runner);
  for (const auto* entry : loaded) add_plugin_group(all, *entry, inv.command);
  store_command_line(args, all, inv.options, inv.registry.get(), inv.command);

  for (const auto& e : inv.config) {
    const std::string where = e.file + ":" + std::to_string(e.line) + ": ";
    if (e.key == "config" || e.key == "help") {
      throw ConfigError(where + "'" + e.key + "' cannot be set in a config file");
    }
    if (all.find_nothrow(e.key, false)) {
      if (inv.options.count(e.key) && !inv.options[e.key].defaulted()) continue;  // the command line wins
      try {
        auto parsed =
            po::command_line_parser(std::vector<std::string>{"--" + e.key + "=" + e.value}).options(all).run();
        inv.options.erase(e.key);
        po::store(parsed, inv.options);
        inv.config_keys.insert(e.key);
      } catch (const po::error& err) {
        throw ConfigError(where + err.what());
      }
      continue;
    }
    const auto dot = e.key.find('.');
    if (all_runner_keys().count(e.key)) continue;  // an option of another command: harmless here
    if (dot != std::string::npos) {
      const auto plugin = e.key.substr(0, dot);
      bool plugin_known = false;
      for (const auto& p : inv.registry->plugins()) plugin_known = plugin_known || p.info.name == plugin;
      if (plugin_known) {
        // Options of plugins this command does not load are checked only by the commands that do.
        bool option_known = false;
        for (const auto& p : inv.registry->plugins()) {
          if (p.info.name == plugin) option_known = option_known || p.info.options->find_nothrow(e.key.substr(dot + 1), false);
        }
        if (option_known) continue;
      }
      if (!plugin_known) {
        throw ConfigError(where + "section [" + plugin + "] names no plugin found; torchfit plugins lists them");
      }
    }
    try {
      unknown_option(e.key, all, inv.registry.get(), inv.command, where);
    } catch (const ConfigError& err) {
      throw ConfigError(std::string(err.what()) + " (in config file)");
    }
  }
  try {
    po::notify(inv.options);
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + " (see: torchfit " + inv.command + " --help)");
  }
  if (!named_config && !inv.config.empty()) {
    const std::filesystem::path origin = inv.resume_state.empty() ? inv.config_file : inv.resume_state;
    check_written_files(inv, origin.has_parent_path() ? origin.parent_path() : std::filesystem::path("."));
  }

  // Route the plugin values to their plugins, as that plugin's own (unprefixed) options; a
  // model's options given without the prefix become --<model>.<option>.
  const PluginEntry* model = nullptr;
  for (const auto* entry : loaded) {
    if (entry->info.kind == PluginKind::Model) model = entry;
  }
  std::vector<std::string> moved;
  auto bare_model_option = [&](const std::string& key) {
    return model && key.find('.') == std::string::npos && !runner.find_nothrow(key, false) &&
           model->info.options->find_nothrow(key, false);
  };
  for (const auto& [key, value] : inv.options) {
    const auto dot = key.find('.');
    if (bare_model_option(key)) {
      const auto prefixed = model->info.name + "." + key;
      const bool overridden = inv.config_keys.count(key) && inv.has(prefixed) && !inv.config_keys.count(prefixed);
      if (!value.defaulted() && !overridden) {
        inv.plugin_values[model->info.name].push_back("--" + key + "=" + text_of(value.value()));
      }
      moved.push_back(key);
      continue;
    }
    if (dot == std::string::npos || value.defaulted()) continue;
    if (model && key.substr(0, dot) == model->info.name) {
      // --task and --mlp.task: the command line wins over the config file; both given is an error.
      const auto bare = key.substr(dot + 1);
      if (inv.has(bare) && bare_model_option(bare)) {
        if (inv.config_keys.count(key)) continue;
        if (!inv.config_keys.count(bare)) {
          throw ConfigError("--" + bare + " and --" + key + " are the same option; give it once");
        }
      }
    }
    inv.plugin_values[key.substr(0, dot)].push_back("--" + key.substr(dot + 1) + "=" + text_of(value.value()));
  }
  for (const auto& key : moved) inv.options.erase(key);
  return inv;
}

std::string help(const Invocation& inv) {
  std::ostringstream out;
  std::string text;
  for (const auto& [name, t] : commands()) {
    if (name == inv.command) text = t;
  }
  out << "Usage: torchfit " << inv.command << " [options]\n\n" << text << ".\n\n";
  out << command_options(inv.command) << "\n";
  if (takes_data(inv.command)) out << data_options(inv.command) << "\n";
  out << general_options() << "\n";
  std::set<std::string> shown;
  auto show = [&](const PluginEntry& entry) {
    if (!shown.insert(entry.info.name).second || entry.info.options->options().empty()) return;
    po::options_description group;
    add_plugin_group(group, entry, inv.command, true);
    out << group << "\n";
  };
  if (inv.options.count("model")) {
    try {
      show(inv.registry->find(inv.options["model"].as<std::string>(), PluginKind::Model));
    } catch (const Error&) {
    }
  } else if (inv.command != "plugins") {
    out << "(give --model NAME to see that model's options)\n\n";
  }
  if (!inv.dataset.empty()) {
    try {
      show(inv.registry->find(inv.dataset, PluginKind::Dataset));
    } catch (const Error&) {
    }
  } else if (takes_data(inv.command)) {
    out << "(give --dataset NAME to see that dataset's options)\n\n";
  }
  for (const auto& cb : inv.callbacks) show(inv.registry->find(cb, PluginKind::Callback));
  if (inv.command == "train" || inv.command == "evaluate") {
    for (const auto& p : inv.registry->plugins()) {
      if (p.info.kind == PluginKind::Metric) show(p);
    }
  }
  if (inv.command == "train") {
    out << "A runner option with the same name as a plugin option (--monitor, --mode, --patience,\n"
           "--ckpt-path) sets it on every loaded plugin that has it; --<plugin>.<option> sets one.\n";
  }
  return out.str();
}

std::string overview() {
  std::ostringstream out;
  out << "torchfit: train LibTorch models with plugins, like torchkeras' KerasModel.\n\n"
         "Usage: torchfit <command> [options]\n\nCommands:\n";
  for (const auto& [name, text] : commands()) {
    out << "  " << name << std::string(10 - name.size(), ' ') << text << "\n";
  }
  out << "\nOptions:\n  -h, --help    show this help; 'torchfit <command> --help' shows a command's options\n"
         "  --version     print the version of torchfit, its plugin ABI and LibTorch\n\n"
         "Example (the ring classifier, with early stopping and the best checkpoint):\n"
         "  torchfit train --model dnn_binary --epochs 100 --patience 10 --monitor val_acc --mode max\n\n"
         "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.\n";
  return out.str();
}

std::string resolved_config(const Invocation& inv, const std::vector<const PluginEntry*>& plugins) {
  std::ostringstream out;
  out << "# The resolved settings of this run: torchfit train --config <this file> repeats it.\n";
  for (const auto& [key, value] : inv.options) {
    if (key.find('.') != std::string::npos || key == "config" || key == "help" || key == "quiet" || key == "resume") {
      continue;
    }
    const auto text = text_of(value.value());
    if (!text.empty()) out << key << " = " << text << "\n";
  }
  if (!inv.options.count("callbacks")) out << "callbacks = none\n";
  for (const auto* entry : plugins) {
    const auto options = inv.plugin_options(*entry);
    if (entry->info.options->options().empty()) continue;
    out << "\n[" << entry->info.name << "]\n";
    for (const auto& opt : entry->info.options->options()) {
      if (options.count(opt->long_name())) {
        out << opt->long_name() << " = " << text_of(options[opt->long_name()].value()) << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace torchfit::cli
