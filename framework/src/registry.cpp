// Plugin discovery, version checks, option parsing and lifetime-safe creation.
#include "torchfit/registry.hpp"

#include <boost/dll/runtime_symbol_info.hpp>
#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "torchfit/errors.hpp"
#include "torchfit/log.hpp"
#include "torchfit/plugin_path.hpp"
#include "torchfit/text.hpp"

namespace torchfit {
namespace fs = std::filesystem;
namespace po = boost::program_options;

const char* kind_name(PluginKind kind) {
  switch (kind) {
    case PluginKind::Callback:
      return "callback";
    case PluginKind::Metric:
      return "metric";
    case PluginKind::Model:
      return "model";
    case PluginKind::Dataset:
      return "dataset";
  }
  return "?";
}

namespace {

using Library = std::shared_ptr<boost::dll::shared_library>;

// The object's own shared_ptr and its library both live in the deleter, released in that
// order: the object dies while its code is still loaded.
template <typename T>
std::shared_ptr<T> hold_library(std::shared_ptr<T> object, Library library) {
  T* raw = object.get();
  return std::shared_ptr<T>(raw, [object = std::move(object), library = std::move(library)](T*) mutable {
    object.reset();
    library.reset();
  });
}

// A model plugin whose nets and losses keep its library loaded too.
class LibraryModel final : public ModelPlugin {
 public:
  LibraryModel(std::shared_ptr<ModelPlugin> inner, Library library, std::string name)
      : inner_(std::move(inner)), library_(std::move(library)), name_(std::move(name)) {}
  Net make_net() const override {
    auto net = inner_->make_net();
    net.keep_alive(library_);
    net.set_name(name_);
    return net;
  }
  Loss make_loss() const override {
    auto loss = inner_->make_loss();
    loss.keep_alive(library_);
    return loss;
  }
  std::vector<std::string> default_metrics() const override { return inner_->default_metrics(); }
  OptimizerDefaults default_optimizer() const override { return inner_->default_optimizer(); }
  int64_t default_batch_size() const override { return inner_->default_batch_size(); }
  DataSplits make_data(uint64_t seed) const override { return inner_->make_data(seed); }
  int64_t input_features() const override { return inner_->input_features(); }
  Predictions to_predictions(const torch::Tensor& outputs) const override { return inner_->to_predictions(outputs); }
  torch::Tensor make_targets(const torch::Tensor& column, const std::string& origin) override {
    return inner_->make_targets(column, origin);
  }
  void adapt(const Dataset& train) override { inner_->adapt(train); }
  std::vector<std::pair<std::string, std::string>> learned_options() const override {
    return inner_->learned_options();
  }
  void save_torchscript(const Net& net, const std::filesystem::path& path) const override {
    inner_->save_torchscript(net, path);
  }

 private:
  std::shared_ptr<ModelPlugin> inner_;  // destroyed before library_
  Library library_;
  std::string name_;
};

// A dataset plugin whose datasets and transforms keep its library loaded too.
class LibraryDatasetPlugin final : public DatasetPlugin {
 public:
  LibraryDatasetPlugin(std::shared_ptr<DatasetPlugin> inner, Library library)
      : inner_(std::move(inner)), library_(std::move(library)) {}
  std::shared_ptr<const Dataset> load(const DataRequest& request) const override {
    return held(inner_->load(request));
  }
  std::shared_ptr<const Dataset> load_validation(const DataRequest& request) const override {
    return held(inner_->load_validation(request));
  }
  std::vector<Transform> transforms(bool training) const override {
    auto out = inner_->transforms(training);
    for (auto& t : out) {
      t = [t = std::move(t), library = library_](Sample& sample, Rng& rng) { t(sample, rng); };
    }
    return out;
  }

 private:
  std::shared_ptr<const Dataset> held(std::shared_ptr<const Dataset> data) const {
    return data ? hold_library(std::move(data), library_) : nullptr;
  }
  std::shared_ptr<DatasetPlugin> inner_;  // destroyed before library_
  Library library_;
};

const char* factory_name(PluginKind kind) {
  switch (kind) {
    case PluginKind::Callback:
      return "torchfit_create_callback";
    case PluginKind::Metric:
      return "torchfit_create_metric";
    case PluginKind::Model:
      return "torchfit_create_model";
    case PluginKind::Dataset:
      return "torchfit_create_dataset";
  }
  return "?";
}

std::string major_minor(const std::string& version) {
  auto first = version.find('.');
  auto second = first == std::string::npos ? std::string::npos : version.find('.', first + 1);
  return version.substr(0, second);
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : sep) + item;
  }
  return out;
}

// What is wrong with `file` as an ELF shared library, read from its headers, or "" when
// they fit in the file (the dynamic loader checks the rest and says so in dlerror()). Only
// the damage that would crash the loader is looked for: headers, segments or section tables
// that lie past the end of the file.
std::string elf_damage(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return "cannot read its size: " + ec.message();
  std::ifstream in(file, std::ios::binary);
  Elf64_Ehdr header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    return "";  // not ELF at all: the loader says "invalid ELF header"
  }
  if (header.e_ident[EI_CLASS] != ELFCLASS64) return "";  // the loader says "wrong ELF class"
  const auto past_end = [&](uint64_t offset, uint64_t length) {
    return offset > size || length > size - offset;
  };
  const auto truncated = [&](const std::string& what) {
    return "the file is truncated or damaged: its " + what + " lie past its end (" + std::to_string(size) +
           " bytes); rebuild or reinstall it";
  };
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      past_end(header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr))) {
    return truncated("program headers");
  }
  if (header.e_shnum != 0 && past_end(header.e_shoff, uint64_t{header.e_shnum} * header.e_shentsize)) {
    return truncated("section headers");
  }
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment{};
    if (!in.read(reinterpret_cast<char*>(&segment), sizeof segment)) return truncated("program headers");
    if ((segment.p_type == PT_LOAD || segment.p_type == PT_DYNAMIC) && past_end(segment.p_offset, segment.p_filesz)) {
      return truncated("segments");
    }
  }
  return "";
}

}  // namespace

std::vector<fs::path> Registry::search_path(const std::vector<fs::path>& extra) {
  return plugin_search_path(fs::path(boost::dll::program_location().string()), extra,
                            std::getenv("TORCHFIT_PLUGIN_PATH"), fs::path(boost::dll::this_line_location().string()));
}

Registry::Registry(std::vector<fs::path> dirs) : dirs_(unique_plugin_folders(dirs)) {
  for (const auto& dir : dirs_) scan(dir);
}

void Registry::scan(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    logger("plugins")->debug("plugin folder '{}' does not exist; skipped", dir.string());
    return;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".so") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    // A damaged file is refused before the dynamic loader maps it: mapping a truncated
    // library and touching its missing pages kills the process with SIGBUS.
    if (auto damage = elf_damage(file); !damage.empty()) {
      skipped_.push_back({file, "cannot be loaded: " + damage, true});
      continue;
    }
    auto library = std::make_shared<boost::dll::shared_library>();
    boost::system::error_code load_error;
    library->load(boost::dll::fs::path(file.string()), boost::dll::load_mode::default_mode, load_error);
    if (load_error) {
      // Boost's error code says only "Bad file descriptor"; the dynamic loader's reason
      // (an invalid ELF header, a missing dependency) is still pending in dlerror().
      const char* reason = ::dlerror();
      skipped_.push_back({file, "cannot be loaded: " + (reason ? std::string(reason) : load_error.message()), true});
      continue;
    }
    const bool has_abi = library->has("torchfit_plugin_abi");
    if (!has_abi || !library->has("torchfit_plugin_info")) {
      skipped_.push_back({file,
                          has_abi ? "exports torchfit_plugin_abi but no torchfit_plugin_info; build it with one of "
                                    "the TORCHFIT_*_PLUGIN macros"
                                  : "is not a torchfit plugin (it exports no torchfit_plugin_abi)",
                          has_abi});
      continue;
    }
    const unsigned abi = library->get_alias<unsigned()>("torchfit_plugin_abi")();
    if (abi != kPluginAbiVersion) {
      skipped_.push_back({file,
                          "was built for plugin ABI " + std::to_string(abi) + ", this torchfit speaks " +
                              std::to_string(kPluginAbiVersion) + "; rebuild it against this torchfit",
                          true});
      continue;
    }
    const PluginInfo* described = nullptr;
    try {
      described = &library->get_alias<const PluginInfo&()>("torchfit_plugin_info")();
    } catch (const std::exception& e) {
      skipped_.push_back({file, std::string("failed to describe itself: ") + e.what(), true});
      continue;
    } catch (...) {
      skipped_.push_back({file, "failed to describe itself (it threw something that is no std::exception)", true});
      continue;
    }
    const PluginInfo& info = *described;
    if (major_minor(info.torch_version) != major_minor(compat::torch_version())) {
      skipped_.push_back({file,
                          "was built against LibTorch " + info.torch_version + ", this torchfit runs on " +
                              compat::torch_version() + "; rebuild it against this torchfit",
                          true});
      continue;
    }
    const char* factory = factory_name(info.kind);
    if (!library->has(factory)) {
      skipped_.push_back({file, std::string("says it is a ") + kind_name(info.kind) + " plugin but exports no " + factory,
                          true});
      continue;
    }
    plugins_.push_back({library, info, file});
  }
}

std::vector<std::string> Registry::names(PluginKind kind) const {
  std::vector<std::string> out;
  for (const auto& p : plugins_) {
    if (p.info.kind != kind) {
      continue;
    }
    if (kind == PluginKind::Metric) {
      out.insert(out.end(), p.info.provides.begin(), p.info.provides.end());
    } else {
      out.push_back(p.info.name);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

const PluginEntry& Registry::find(const std::string& name, PluginKind kind) const {
  std::vector<const PluginEntry*> matches;
  const PluginEntry* other_kind = nullptr;
  for (const auto& p : plugins_) {
    const bool hit = kind == PluginKind::Metric && p.info.kind == PluginKind::Metric
                         ? std::find(p.info.provides.begin(), p.info.provides.end(), name) != p.info.provides.end()
                         : p.info.name == name;
    if (hit && p.info.kind == kind) {
      matches.push_back(&p);
    } else if (p.info.name == name) {
      other_kind = &p;
    }
  }
  const std::string what = kind_name(kind);
  if (matches.size() > 1) {
    std::string files;
    for (const auto* m : matches) {
      files += (files.empty() ? "" : " and ") + m->file.string();
    }
    throw PluginError("two " + what + " plugins provide '" + name + "': " + files +
                      "; remove one or take its folder off the plugin path");
  }
  if (matches.size() == 1) {
    return *matches.front();
  }
  for (const auto& s : skipped_) {
    if (s.file.stem().string() == name) {
      throw PluginError(what + " plugin '" + name + "' (" + s.file.string() + ") " + s.reason);
    }
  }
  if (other_kind) {
    throw PluginError("'" + name + "' is a " + kind_name(other_kind->info.kind) + " plugin, not a " + what +
                      " plugin (" + other_kind->file.string() + ")");
  }
  std::vector<std::string> dirs;
  for (const auto& d : dirs_) {
    dirs.push_back(d.string());
  }
  const auto known = names(kind);
  const auto guess = closest_name(name, known);
  // A refused plugin's declared name cannot be read (its info is not trusted), so an unknown
  // name lists the refused plugins: one of them may be the one asked for.
  std::vector<std::string> refused;
  for (const auto& s : skipped_) {
    if (s.is_plugin) refused.push_back(s.file.string() + " " + s.reason);
  }
  throw PluginError("unknown " + what + " '" + name + "'" + (guess.empty() ? "." : "; did you mean '" + guess + "'?") +
                    " Available " + what + "s: " + (known.empty() ? "(none)" : join(known)) +
                    ". Searched: " + (dirs.empty() ? "(no folders)" : join(dirs)) +
                    (refused.empty() ? "" : ". Refused plugin files, which may hold it: " + join(refused, "; ")));
}

PluginOptions Registry::parse_options(const PluginEntry& entry, const std::vector<std::string>& args) const {
  PluginOptions options;
  try {
    po::store(po::command_line_parser(args).options(*entry.info.options).run(), options);
    po::notify(options);
  } catch (const po::error& e) {
    std::string msg = e.what();
    // Show the option as the user types it: --<plugin>.<option> (quoted by Boost's messages,
    // leading torchfit::number's).
    if (msg.rfind("--", 0) == 0) msg.insert(2, entry.info.name + ".");
    for (size_t pos = 0; (pos = msg.find("'--", pos)) != std::string::npos; pos += 3 + entry.info.name.size()) {
      msg.insert(pos + 3, entry.info.name + ".");
    }
    throw ConfigError("plugin '" + entry.info.name + "': " + msg);
  }
  return options;
}

PluginOptions Registry::parse_option_values(const PluginEntry& entry, const OptionValues& options) const {
  std::vector<std::string> known, args;
  for (const auto& option : entry.info.options->options()) known.push_back(option->long_name());
  for (const auto& [key, value] : options) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      const auto guess = closest_name(key, known);
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw ConfigError("plugin '" + entry.info.name + "' has no option '" + key + "'" +
                        (guess.empty() ? "" : " (did you mean '" + guess + "'?)") +
                        ". Its options: " + (list.empty() ? "(none)" : list));
    }
    args.push_back("--" + key + "=" + value);
  }
  return parse_options(entry, args);
}

std::shared_ptr<Callback> Registry::callback(const std::string& name, const OptionValues& options) const {
  return make_callback(name, parse_option_values(find(name, PluginKind::Callback), options));
}

std::shared_ptr<Metric> Registry::metric(const std::string& name, const OptionValues& options) const {
  return make_metric(name, parse_option_values(find(name, PluginKind::Metric), options));
}

std::shared_ptr<ModelPlugin> Registry::model(const std::string& name, const OptionValues& options) const {
  return make_model(name, parse_option_values(find(name, PluginKind::Model), options));
}

std::shared_ptr<DatasetPlugin> Registry::dataset(const std::string& name, const OptionValues& options) const {
  return make_dataset(name, parse_option_values(find(name, PluginKind::Dataset), options));
}

std::shared_ptr<Callback> Registry::make_callback(const std::string& name, const PluginOptions& options) const {
  const auto& entry = find(name, PluginKind::Callback);
  std::shared_ptr<Callback> made;
  try {
    made = entry.library->get_alias<CallbackFactory>("torchfit_create_callback")(options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("callback plugin '" + name + "' could not be created: " + e.what());  // a runtime failure, not a usage error
  }
  if (!made) {
    throw PluginError("callback plugin '" + name + "' returned nothing from its factory");
  }
  made->set_name(entry.info.name);
  return hold_library(std::move(made), entry.library);
}

std::shared_ptr<Metric> Registry::make_metric(const std::string& name, const PluginOptions& options) const {
  const auto& entry = find(name, PluginKind::Metric);
  std::shared_ptr<Metric> made;
  try {
    made = entry.library->get_alias<MetricFactory>("torchfit_create_metric")(name, options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("metric '" + name + "' (plugin '" + entry.info.name + "') could not be created: " + e.what());  // a runtime failure, not a usage error
  }
  if (!made) {
    throw PluginError("metric plugin '" + entry.info.name + "' made nothing for '" + name + "'");
  }
  return hold_library(std::move(made), entry.library);
}

std::shared_ptr<ModelPlugin> Registry::make_model(const std::string& name, const PluginOptions& options) const {
  const auto& entry = find(name, PluginKind::Model);
  std::shared_ptr<ModelPlugin> made;
  try {
    made = entry.library->get_alias<ModelFactory>("torchfit_create_model")(options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("model plugin '" + name + "' could not be created: " + e.what());  // a runtime failure, not a usage error
  }
  if (!made) {
    throw PluginError("model plugin '" + name + "' returned nothing from its factory");
  }
  return std::make_shared<LibraryModel>(hold_library(std::move(made), entry.library), entry.library,
                                        entry.info.name);
}

std::shared_ptr<DatasetPlugin> Registry::make_dataset(const std::string& name, const PluginOptions& options) const {
  const auto& entry = find(name, PluginKind::Dataset);
  std::shared_ptr<DatasetPlugin> made;
  try {
    made = entry.library->get_alias<DatasetFactory>("torchfit_create_dataset")(options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("dataset plugin '" + name + "' could not be created: " + e.what());  // a runtime failure, not a usage error
  }
  if (!made) {
    throw PluginError("dataset plugin '" + name + "' returned nothing from its factory");
  }
  return std::make_shared<LibraryDatasetPlugin>(hold_library(std::move(made), entry.library), entry.library);
}

Metrics Registry::make_metrics(const std::vector<std::string>& names) const {
  Metrics metrics;
  for (const auto& name : names) {
    for (const auto& [existing, metric] : metrics) {
      if (existing == name) {
        throw ConfigError("metric '" + name + "' is listed twice; list each metric once");
      }
    }
    const auto& entry = find(name, PluginKind::Metric);
    metrics.emplace_back(name, make_metric(name, parse_options(entry)));
  }
  return metrics;
}

}  // namespace torchfit
