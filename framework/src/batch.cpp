// Fields, Batch and collate.
#include "torchfit/batch.hpp"

#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

namespace {
const char* role_word(Role role) {
  switch (role) {
    case Role::Input:
      return "input";
    case Role::Target:
      return "target";
    case Role::Output:
      return "output";
  }
  return "?";
}

std::string field_string(const std::string& name, const torch::Tensor& t, Role role) {
  std::string out = name + " ";
  out += t.defined() ? shape_string(t.sizes()) + " " + std::string(c10::toString(t.scalar_type())) : "(undefined)";
  if (role == Role::Target) out += " (target)";
  return out;
}
}  // namespace

Fields& Fields::add(std::string name, torch::Tensor tensor, Role role) {
  if (name.empty()) throw DataError("a field needs a name; got an empty one (fields: " + describe() + ")");
  if (contains(name)) throw DataError("two fields are named '" + name + "'; give each field its own name");
  fields_.push_back({std::move(name), std::move(tensor), role});
  return *this;
}

size_t Fields::find(const std::string& name) const {
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (fields_[i].name == name) return i;
  }
  return fields_.size();
}

void Fields::missing(const std::string& what) const {
  throw DataError("there is no " + what + " among the fields (" + (fields_.empty() ? std::string("none") : describe()) +
                  ")");
}

torch::Tensor& Fields::operator[](const std::string& name) {
  const size_t i = find(name);
  if (i == fields_.size()) missing("field '" + name + "'");
  return fields_[i].tensor;
}

const torch::Tensor& Fields::operator[](const std::string& name) const {
  return const_cast<Fields&>(*this)[name];  // NOLINT: the same lookup
}

torch::Tensor& Fields::operator[](size_t index) {
  if (index >= fields_.size()) missing("field " + std::to_string(index));
  return fields_[index].tensor;
}

const torch::Tensor& Fields::operator[](size_t index) const {
  return const_cast<Fields&>(*this)[index];  // NOLINT: the same lookup
}

size_t Fields::count(Role role) const {
  size_t n = 0;
  for (const auto& f : fields_) n += f.role == role ? 1 : 0;
  return n;
}

const torch::Tensor& Fields::nth(Role role, size_t i) const {
  size_t seen = 0;
  for (const auto& f : fields_) {
    if (f.role == role && seen++ == i) return f.tensor;
  }
  missing(std::string(role_word(role)) + (i ? " " + std::to_string(i) : std::string()));
}

std::vector<torch::Tensor> Fields::inputs() const {
  std::vector<torch::Tensor> out;
  for (const auto& f : fields_) {
    if (f.role == Role::Input) out.push_back(f.tensor);
  }
  return out;
}

std::vector<std::string> Fields::names(Role role) const {
  std::vector<std::string> out;
  for (const auto& f : fields_) {
    if (f.role == role) out.push_back(f.name);
  }
  return out;
}

std::string Fields::describe() const {
  std::string out;
  for (const auto& f : fields_) out += (out.empty() ? "" : ", ") + field_string(f.name, f.tensor, f.role);
  return out;
}

Batch::Batch(torch::Tensor x, torch::Tensor y) {
  add_input("x", std::move(x));
  if (y.defined()) add_target("y", std::move(y));
}

int64_t Batch::size() const {
  if (empty()) return 0;
  const auto& t = (*this)[size_t{0}];
  return t.defined() && t.dim() > 0 ? t.size(0) : 0;
}

Batch Batch::to(torch::Device device, bool non_blocking) const {
  Batch out(*this);
  for (size_t i = 0; i < out.count(); ++i) {
    auto& t = out[i];
    if (t.defined() && t.device() != device) t = t.to(device, non_blocking);
  }
  return out;
}

Batch Batch::pinned() const {
  Batch out(*this);
  for (size_t i = 0; i < out.count(); ++i) {
    auto& t = out[i];
    if (t.defined() && t.device().is_cpu() && !t.is_pinned()) t = t.pin_memory();
  }
  return out;
}

Batch collate(const std::vector<Sample>& samples, const std::vector<int64_t>& indices, const std::string& dataset) {
  if (samples.empty()) return Batch();
  const Sample& first = samples.front();
  auto where = [&](size_t s) { return "sample " + std::to_string(indices.at(s)) + " of " + dataset; };
  for (size_t s = 1; s < samples.size(); ++s) {
    const Sample& other = samples[s];
    if (other.count() != first.count()) {
      throw DataError(where(s) + " has the fields (" + other.describe() + ") but " + where(0) + " has (" +
                      first.describe() + "); every sample needs the same fields");
    }
    for (size_t f = 0; f < first.count(); ++f) {
      const auto& a = first[f];
      const auto& b = other[f];
      if (other.name(f) != first.name(f) || other.role(f) != first.role(f)) {
        throw DataError(where(s) + " has the fields (" + other.describe() + ") but " + where(0) + " has (" +
                        first.describe() + "); every sample needs the same fields, in the same order");
      }
      if (a.defined() != b.defined() || (a.defined() && (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()))) {
        throw DataError("field '" + first.name(f) + "' of " + where(s) + " is " +
                        field_string(first.name(f), b, Role::Input) + " but of " + where(0) + " it is " +
                        field_string(first.name(f), a, Role::Input) +
                        "; every sample's field needs the same shape and dtype to be stacked into a batch");
      }
    }
  }
  Fields fields;
  std::vector<torch::Tensor> column(samples.size());
  for (size_t f = 0; f < first.count(); ++f) {
    torch::Tensor stacked;
    if (first[f].defined()) {
      for (size_t s = 0; s < samples.size(); ++s) column[s] = samples[s][f];
      stacked = torch::stack(column);
    }
    fields.add(first.name(f), std::move(stacked), first.role(f));
  }
  return Batch(std::move(fields));
}

}  // namespace torchfit
