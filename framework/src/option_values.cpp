// Lists in option values: split, trimmed, parsed whole.
#include "torchfit/option_values.hpp"

#include "torchfit/text.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <sstream>

namespace torchfit {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    items.push_back(b == std::string::npos ? "" : item.substr(b, item.find_last_not_of(" \t") - b + 1));
  }
  return items;
}

std::optional<std::vector<int64_t>> parse_int_list(const std::string& text, int64_t min, int64_t max) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(text)) {
    if (item.empty()) continue;
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(item, &used);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (used != item.size() || n < min || n > max) return std::nullopt;
    out.push_back(n);
  }
  return out;
}

std::optional<std::vector<double>> parse_number_list(const std::string& text) {
  std::vector<double> out;
  for (const auto& item : split_list(text)) {
    size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (item.empty() || used != item.size() || !std::isfinite(v)) return std::nullopt;
    out.push_back(v);
  }
  return out;
}

namespace {

std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

NumberRange NumberRange::positive() {
  NumberRange r;
  r.min = 0;
  r.min_open = true;
  r.what = "a positive number";
  return r;
}

NumberRange NumberRange::at_least(double min, const std::string& note) {
  NumberRange r;
  r.min = min;
  r.what = "a finite number of " + number_text(min) + " or more" + (note.empty() ? "" : " " + note);
  return r;
}

NumberRange NumberRange::between(double min, double max, bool min_open, bool max_open) {
  NumberRange r;
  r.min = min;
  r.max = max;
  r.min_open = min_open;
  r.max_open = max_open;
  if (min_open == max_open) {
    r.what = "between " + number_text(min) + " and " + number_text(max) + (min_open ? " (exclusive)" : "");
  } else {
    r.what = std::string("in ") + (min_open ? "(" : "[") + number_text(min) + ", " + number_text(max) +
             (max_open ? ")" : "]");
  }
  return r;
}

NumberRange NumberRange::up_to(double max_value, const std::string& why) const {
  NumberRange r = *this;
  r.max = max_value;
  r.max_open = false;
  r.what += " up to " + number_text(max_value) + (why.empty() ? "" : " (" + why + ")");
  return r;
}

Choice::Choice(std::vector<std::string> words)
    : boost::program_options::typed_value<std::string>(nullptr), words_(std::move(words)) {
  std::string name;
  for (const auto& w : words_) name += (name.empty() ? "" : "|") + w;
  value_name(name);
}

void Choice::xparse(boost::any& store, const std::vector<std::string>& tokens) const {
  boost::program_options::typed_value<std::string>::xparse(store, tokens);
  const std::string* v = boost::any_cast<std::string>(&store);
  if (v && std::find(words_.begin(), words_.end(), *v) == words_.end()) {
    constexpr size_t kShown = 60;
    const std::string shown = v->size() > kShown ? v->substr(0, kShown) + "..." : *v;
    const std::string guess = closest_name(*v, words_);
    boost::program_options::error_with_option_name error("%canonical_option% must be " + either(words_) + ", got '" +
                                                         shown + "'" +
                                                         (guess.empty() ? "" : " (did you mean '" + guess + "'?)"));
    throw error;
  }
}

Choice* one_of(std::vector<std::string> words) { return new Choice(std::move(words)); }

std::string either(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) out += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  return out;
}

std::string refusal(const NumberRange& range, const std::string& token) {
  constexpr size_t kShown = 60;  // a value pasted by mistake is not echoed whole
  return "must be " + range.what + ", got " + (token.size() > kShown ? token.substr(0, kShown) + "..." : token);
}

}  // namespace torchfit
