// StateFields: a callback's state, each field named once for saving and for loading.
#pragma once

#include <torch/serialize/archive.h>

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

class Monitor;

/// The fields a callback keeps across a resume, listed once, so what is saved and what is read
/// back cannot drift apart (a key misspelt on one side would be silently skipped):
///
///     torchfit::StateFields state_fields() override {
///       return torchfit::StateFields().add("wait", wait_).add("stopped_epoch", stopped_epoch_).add(monitor_);
///     }
///
/// Callback's default state_dict() and load_state_dict() save and read them. Loading reads each
/// field the state has; one it lacks (a state written before the field existed) keeps its
/// value; one of another type is a CheckpointError naming the key.
class TORCHFIT_EXPORT StateFields {
 public:
  StateFields& add(std::string key, int64_t& value);
  StateFields& add(std::string key, double& value);
  StateFields& add(std::string key, bool& value);
  StateFields& add(std::string key, std::string& value);
  StateFields& add(std::string key, std::vector<double>& value);
  StateFields& add(std::string key, std::vector<int64_t>& value);
  /// A Monitor's best value and epoch (keys has_best, best, best_epoch).
  StateFields& add(Monitor& monitor);

  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive) const;
  /// The keys, in order (a Monitor's three included).
  std::vector<std::string> keys() const;
  bool empty() const { return fields_.empty(); }

 private:
  using Target = std::variant<int64_t*, double*, bool*, std::string*, std::vector<double>*, std::vector<int64_t>*,
                              Monitor*>;
  StateFields& insert(std::string key, Target target);
  std::vector<std::pair<std::string, Target>> fields_;
};

}  // namespace torchfit
