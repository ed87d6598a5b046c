// StateFields: named fields saved to and read from a callback's state archive.
#include "torchfit/state_fields.hpp"

#include <stdexcept>
#include <type_traits>

#include "torchfit/callback.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/monitor.hpp"

namespace torchfit {

namespace {

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

const std::vector<std::string> kMonitorKeys{"has_best", "best", "best_epoch"};

[[noreturn]] void wrong_type(const std::string& key, const c10::IValue& v, const char* wanted) {
  throw CheckpointError("state field '" + key + "' holds " + v.tagKind() + ", not " + wanted +
                        " (a state written by another version of this callback?)");
}

// The items of a saved list, each of type T (double or int64_t).
template <typename T>
std::vector<T> list_of(const std::string& key, const c10::IValue& v, const char* wanted) {
  if (!v.isList()) wrong_type(key, v, wanted);
  std::vector<T> values;
  for (const auto& item : v.toListRef()) {
    if (std::is_same<T, double>::value ? !item.isDouble() : !item.isInt()) wrong_type(key, item, wanted);
    values.push_back(item.to<T>());
  }
  return values;
}

}  // namespace

StateFields& StateFields::insert(std::string key, Target target) {
  for (const auto& existing : keys()) {
    if (existing == key) throw std::logic_error("torchfit::StateFields: the key '" + key + "' is listed twice");
  }
  fields_.emplace_back(std::move(key), target);
  return *this;
}

StateFields& StateFields::add(std::string key, int64_t& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(std::string key, double& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(std::string key, bool& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(std::string key, std::string& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(std::string key, std::vector<double>& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(std::string key, std::vector<int64_t>& value) { return insert(std::move(key), &value); }
StateFields& StateFields::add(Monitor& monitor) {
  for (const auto& key : kMonitorKeys) {
    for (const auto& existing : keys()) {
      if (existing == key) throw std::logic_error("torchfit::StateFields: the key '" + key + "' is listed twice");
    }
  }
  fields_.emplace_back("", &monitor);
  return *this;
}

std::vector<std::string> StateFields::keys() const {
  std::vector<std::string> out;
  for (const auto& [key, target] : fields_) {
    if (std::holds_alternative<Monitor*>(target)) {
      out.insert(out.end(), kMonitorKeys.begin(), kMonitorKeys.end());
    } else {
      out.push_back(key);
    }
  }
  return out;
}

void StateFields::save(torch::serialize::OutputArchive& archive) const {
  for (const auto& field : fields_) {
    const std::string& key = field.first;
    std::visit(Overloaded{
                   [&](int64_t* v) { archive.write(key, c10::IValue(*v)); },
                   [&](double* v) { archive.write(key, c10::IValue(*v)); },
                   [&](bool* v) { archive.write(key, c10::IValue(*v)); },
                   [&](std::string* v) { archive.write(key, c10::IValue(*v)); },
                   [&](std::vector<double>* v) { archive.write(key, c10::IValue(c10::List<double>(*v))); },
                   [&](std::vector<int64_t>* v) { archive.write(key, c10::IValue(c10::List<int64_t>(*v))); },
                   [&](Monitor* m) { m->save(archive); },
               },
               field.second);
  }
}

void StateFields::load(torch::serialize::InputArchive& archive) const {
  for (const auto& field : fields_) {
    const std::string& key = field.first;
    if (auto* const* monitor = std::get_if<Monitor*>(&field.second)) {
      (*monitor)->load(archive);
      continue;
    }
    c10::IValue v;
    if (!archive.try_read(key, v)) continue;  // a state from before this field: the value stays
    std::visit(Overloaded{
                   [&](int64_t* out) {
                     if (!v.isInt()) wrong_type(key, v, "an integer");
                     *out = v.toInt();
                   },
                   [&](double* out) {
                     if (!v.isDouble()) wrong_type(key, v, "a number");
                     *out = v.toDouble();
                   },
                   [&](bool* out) {
                     if (!v.isBool()) wrong_type(key, v, "true or false");
                     *out = v.toBool();
                   },
                   [&](std::string* out) {
                     if (!v.isString()) wrong_type(key, v, "text");
                     *out = v.toStringRef();
                   },
                   [&](std::vector<double>* out) { *out = list_of<double>(key, v, "a list of numbers"); },
                   [&](std::vector<int64_t>* out) { *out = list_of<int64_t>(key, v, "a list of integers"); },
                   [&](Monitor*) {},
               },
               field.second);
  }
}

// state_fields() only lists where the fields are: saving reads them and changes nothing.
void Callback::state_dict(torch::serialize::OutputArchive& archive) const {
  const_cast<Callback*>(this)->state_fields().save(archive);
}

void Callback::load_state_dict(torch::serialize::InputArchive& archive) { state_fields().load(archive); }

}  // namespace torchfit
