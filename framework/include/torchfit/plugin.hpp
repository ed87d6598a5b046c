// The plugin entry point: a versioned info function and a factory, exported with BOOST_DLL_ALIAS.
#pragma once

#include <boost/dll/alias.hpp>
#include <boost/program_options.hpp>

#include <memory>
#include <string>
#include <vector>

#include "torchfit/callback.hpp"
#include "torchfit/compat.hpp"
#include "torchfit/dataset_plugin.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/export.hpp"
#include "torchfit/metric.hpp"
#include "torchfit/model.hpp"
#include "torchfit/version.hpp"  // kPluginAbiVersion

namespace torchfit {

enum class PluginKind { Callback, Metric, Model, Dataset };

TORCHFIT_EXPORT const char* kind_name(PluginKind kind);

using PluginOptions = boost::program_options::variables_map;

/// What a plugin says about itself, read without creating anything.
struct TORCHFIT_EXPORT PluginInfo {
  PluginInfo(PluginKind kind, std::string name, std::string version, std::string description)
      : kind(kind),
        name(std::move(name)),
        version(std::move(version)),
        description(std::move(description)),
        options(std::make_shared<boost::program_options::options_description>(this->name + " options")) {}

  unsigned abi_version = kPluginAbiVersion;
  std::string torch_version = compat::torch_version();
  PluginKind kind;
  std::string name;
  std::string version;
  std::string description;  ///< one line
  /// For metric plugins: the metric names this library provides.
  std::vector<std::string> provides;
  /// For callback plugins: a progress display (progress_bar), which `torchfit train --quiet`
  /// leaves out of the callbacks.
  bool progress_display = false;
  /// The plugin's own options, unprefixed ("patience"). The runner shows them as
  /// --<plugin>.<option> and reads them from the [<plugin>] section of a config file.
  std::shared_ptr<boost::program_options::options_description> options;
};

using CallbackFactory = std::shared_ptr<Callback>(const PluginOptions& options);
using MetricFactory = std::shared_ptr<Metric>(const std::string& metric, const PluginOptions& options);
using ModelFactory = std::shared_ptr<ModelPlugin>(const PluginOptions& options);
using DatasetFactory = std::shared_ptr<DatasetPlugin>(const PluginOptions& options);

namespace plugin_detail {
inline unsigned abi_version() { return kPluginAbiVersion; }
}  // namespace plugin_detail

}  // namespace torchfit

// The exported names. torchfit_plugin_abi has a signature that never changes, so the host
// can check the version before it touches anything else.
#define TORCHFIT_PLUGIN_ENTRY_(describe, create, factory_type, factory_alias)                  \
  namespace torchfit_plugin_entry {                                                            \
  static const ::torchfit::PluginInfo& info() {                                                \
    static const ::torchfit::PluginInfo instance = describe();                                 \
    return instance;                                                                           \
  }                                                                                            \
  [[maybe_unused]] static ::torchfit::factory_type* const checked_factory = &create;           \
  }                                                                                            \
  BOOST_DLL_ALIAS(::torchfit::plugin_detail::abi_version, torchfit_plugin_abi)                 \
  BOOST_DLL_ALIAS(torchfit_plugin_entry::info, torchfit_plugin_info)                           \
  BOOST_DLL_ALIAS(create, factory_alias)

/// Exports a callback plugin: `describe` returns its PluginInfo, `create` is a
/// `std::shared_ptr<torchfit::Callback>(const torchfit::PluginOptions&)`.
#define TORCHFIT_CALLBACK_PLUGIN(describe, create) \
  TORCHFIT_PLUGIN_ENTRY_(describe, create, CallbackFactory, torchfit_create_callback)
/// Exports a metric plugin: `create(name, options)` makes the metric called `name`.
#define TORCHFIT_METRIC_PLUGIN(describe, create) \
  TORCHFIT_PLUGIN_ENTRY_(describe, create, MetricFactory, torchfit_create_metric)
/// Exports a model plugin: `create(options)` returns a ModelPlugin.
#define TORCHFIT_MODEL_PLUGIN(describe, create) \
  TORCHFIT_PLUGIN_ENTRY_(describe, create, ModelFactory, torchfit_create_model)
/// Exports a dataset plugin: `create(options)` returns a DatasetPlugin.
#define TORCHFIT_DATASET_PLUGIN(describe, create) \
  TORCHFIT_PLUGIN_ENTRY_(describe, create, DatasetFactory, torchfit_create_dataset)
