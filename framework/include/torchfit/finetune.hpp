// Fine-tuning: freeze parameters by name, give groups of parameters their own learning rate.
// The runner's --freeze and --lr-groups; docs/deploy.md#fine-tuning.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

/// Whether a parameter name matches a pattern: a glob (`features.*.weight`, `*.bias`) when it
/// holds * ? or [, else a name or a prefix of whole parts (`features` matches `features.0.weight`,
/// not `features2.weight`).
TORCHFIT_EXPORT bool name_matches(const std::string& name, const std::string& pattern);

/// The names of the net's parameters that match one of `patterns`. A pattern that matches none
/// is a ConfigError naming it and the net's parameter names.
TORCHFIT_EXPORT std::vector<std::string> matching_parameters(const Net& net, const std::vector<std::string>& patterns);

/// Turns off the gradient of the matching parameters: backward computes none for them, so no
/// optimizer moves them or keeps state for them (an optimizer skips a parameter without a
/// gradient), and weight decay leaves them as they are. Returns their names.
TORCHFIT_EXPORT std::vector<std::string> freeze(Net& net, const std::vector<std::string>& patterns);
/// Turns the gradient of the matching parameters back on. Returns their names.
TORCHFIT_EXPORT std::vector<std::string> unfreeze(Net& net, const std::vector<std::string>& patterns);

/// A group of parameters with a learning rate of its own.
struct LrGroup {
  std::string pattern;  ///< as name_matches
  double lr;
};

/// "features=1e-4,head=1e-3" -> groups; a ConfigError naming `option` for anything else.
TORCHFIT_EXPORT std::vector<LrGroup> parse_lr_groups(const std::string& text, const std::string& option);

/// The net's parameters split for an optimizer: group 0 holds those no LrGroup matches (the
/// optimizer's own rate), then one group per LrGroup, each taking the parameters it matches that
/// an earlier one did not. The lr of group g is `lrs[g]`. A group that matches nothing is a
/// ConfigError.
struct ParamGroups {
  std::vector<std::vector<torch::Tensor>> params;
  std::vector<double> lrs;
};
TORCHFIT_EXPORT ParamGroups param_groups(const Net& net, const std::vector<LrGroup>& groups, double lr);

}  // namespace torchfit
