// Fine-tuning: parameters by name, frozen or in groups of their own rate.
#include "torchfit/finetune.hpp"

#include <fnmatch.h>

#include <cmath>

#include "torchfit/errors.hpp"
#include "torchfit/logs.hpp"  // format_value
#include "torchfit/option_values.hpp"

namespace torchfit {

namespace {

std::string names_of(const Net& net) {
  std::string all;
  size_t n = 0;
  for (const auto& p : net.module().named_parameters()) {
    if (n++ < 12) all += (all.empty() ? "" : ", ") + p.key();
  }
  if (n > 12) all += ", ... (" + std::to_string(n) + " in all)";
  return all;
}

std::vector<std::string> set_grad(Net& net, const std::vector<std::string>& patterns, bool on) {
  const auto names = matching_parameters(net, patterns);
  for (auto& p : net.module().named_parameters()) {
    if (std::find(names.begin(), names.end(), p.key()) != names.end()) p.value().set_requires_grad(on);
  }
  return names;
}

}  // namespace

bool name_matches(const std::string& name, const std::string& pattern) {
  if (pattern.find_first_of("*?[") != std::string::npos) return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
  if (name == pattern) return true;
  const std::string prefix = pattern.empty() || pattern.back() == '.' ? pattern : pattern + ".";
  return !prefix.empty() && name.rfind(prefix, 0) == 0;
}

std::vector<std::string> matching_parameters(const Net& net, const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const auto& pattern : patterns) {
    bool any = false;
    for (const auto& p : net.module().named_parameters()) {
      if (!name_matches(p.key(), pattern)) continue;
      any = true;
      if (std::find(out.begin(), out.end(), p.key()) == out.end()) out.push_back(p.key());
    }
    if (!any) {
      throw ConfigError("'" + pattern + "' matches none of the net's parameters (" + names_of(net) +
                        "; torchfit summary shows the layers)");
    }
  }
  return out;
}

std::vector<std::string> freeze(Net& net, const std::vector<std::string>& patterns) {
  return set_grad(net, patterns, false);
}

std::vector<std::string> unfreeze(Net& net, const std::vector<std::string>& patterns) {
  return set_grad(net, patterns, true);
}

std::vector<LrGroup> parse_lr_groups(const std::string& text, const std::string& option) {
  std::vector<LrGroup> out;
  for (const auto& item : split_list(text)) {
    if (item.empty()) continue;
    const auto eq = item.rfind('=');
    double lr = 0;
    size_t used = 0;
    bool ok = eq != std::string::npos && eq > 0;
    if (ok) {
      try {
        lr = std::stod(item.substr(eq + 1), &used);
      } catch (const std::exception&) {
        ok = false;
      }
      ok = ok && used == item.size() - eq - 1 && std::isfinite(lr) && lr > 0;
    }
    if (!ok) {
      throw ConfigError(option + " takes PATTERN=LR pairs with a positive finite LR (features=1e-4,head=1e-3), got '" +
                        item + "'");
    }
    out.push_back({item.substr(0, eq), lr});
  }
  return out;
}

ParamGroups param_groups(const Net& net, const std::vector<LrGroup>& groups, double lr) {
  ParamGroups out;
  out.params.resize(groups.size() + 1);
  out.lrs.push_back(lr);
  for (const auto& g : groups) out.lrs.push_back(g.lr);
  std::vector<bool> used(groups.size(), false);
  for (const auto& p : net.module().named_parameters()) {
    size_t g = 0;
    for (size_t k = 0; k < groups.size() && g == 0; ++k) {
      if (name_matches(p.key(), groups[k].pattern)) {
        g = k + 1;
        used[k] = true;
      }
    }
    out.params[g].push_back(p.value());
  }
  for (size_t k = 0; k < groups.size(); ++k) {
    if (!used[k]) {
      throw ConfigError("learning-rate group '" + groups[k].pattern + "' matches none of the net's parameters " +
                        "(or an earlier group took them all): " + names_of(net));
    }
  }
  return out;
}

}  // namespace torchfit
