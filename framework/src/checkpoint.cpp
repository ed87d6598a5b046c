// Weights checkpoints: a flat, named list of tensors plus a small header.
#include "torchfit/checkpoint.hpp"

#include <sys/mman.h>

#include <memory>
#include <new>
#include <system_error>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"
#include "torchfit/loss.hpp"
#include "torchfit/text.hpp"
#include "envelope.hpp"

#include <sstream>

namespace torchfit {
namespace fs = std::filesystem;

namespace {

// The net's own parameters and buffers, by name (not copies).
WeightSnapshot named_state(const Net& net) {
  WeightSnapshot out;
  for (const auto& p : net.module().named_parameters()) {
    out.emplace_back(p.key(), p.value());
  }
  for (const auto& b : net.module().named_buffers()) {
    out.emplace_back(b.key(), b.value());
  }
  return out;
}

const envelope::Kind kWeightsKind{"TORCHFIT-WEIGHTS", "checkpoint",
                                  "train a model first or give the right --ckpt-path"};

torch::serialize::InputArchive open_archive(const fs::path& path, uint32_t& format) {
  std::istringstream payload(envelope::unwrap(kWeightsKind, path, kCheckpointFormat, format));
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(payload, torch::kCPU);
  } catch (const std::exception&) {
    throw CheckpointError("checkpoint '" + path.string() + "' cannot be read: its checksum is right but LibTorch "
                          "cannot load it (written by an incompatible LibTorch?)");
  }
  return archive;
}

CheckpointInfo read_info(torch::serialize::InputArchive& archive, const fs::path& path) {
  CheckpointInfo info;
  c10::IValue v;
  if (!archive.try_read("torchfit_format", v) || !v.isInt()) {
    throw CheckpointError("checkpoint '" + path.string() + "' holds a LibTorch archive that is not a torchfit checkpoint");
  }
  info.format = v.toInt();
  if (info.format > kCheckpointFormat) {
    throw CheckpointError("checkpoint '" + path.string() + "' has format version " + std::to_string(info.format) +
                          ", newer than this torchfit reads (" + std::to_string(kCheckpointFormat) +
                          "); use a newer torchfit");
  }
  if (archive.try_read("model", v) && v.isString()) {
    info.model = v.toStringRef();
  }
  c10::IValue keys, values;
  if (archive.try_read("log_keys", keys) && archive.try_read("log_values", values) && keys.isList() &&
      values.isDoubleList()) {
    auto k = keys.toList();
    auto d = values.toDoubleList();
    for (size_t i = 0; i < k.size() && i < d.size(); ++i) {
      info.logs.set(k.get(i).toStringRef(), d.get(i));
    }
  }
  return info;
}

// Memory mapped from the system for a snapshot's CPU tensors, unmapped with the last of them.
// Snapshots are taken between epochs and kept; on glibc's heap they landed among the per-batch
// tensors, and glibc then handed heap pages back and faulted them in again every batch (MLP
// benchmark, early_stopping alone: 2.6x the hand loop's time, ~390,000 page faults a run
// against its ~2,000; docs/performance.md).
class Mapping {
 public:
  explicit Mapping(size_t bytes) : bytes_(bytes) {
    data_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) {
      throw std::bad_alloc();
    }
  }
  ~Mapping() { ::munmap(data_, bytes_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_;
  size_t bytes_;
};

size_t byte_size(const torch::Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }
// A tensor's bytes rounded up to a cache line, so that the next one starts aligned.
size_t aligned_size(const torch::Tensor& t) { return (byte_size(t) + 63) / 64 * 64; }

// Empty tensors shaped like `state`: the CPU ones in one mapping, 64-byte aligned.
WeightSnapshot allocate_snapshot(const WeightSnapshot& state) {
  size_t total = 0;
  for (const auto& entry : state) {
    if (entry.second.device().is_cpu()) total += aligned_size(entry.second);
  }
  auto mapping = total > 0 ? std::make_shared<Mapping>(total) : nullptr;
  WeightSnapshot out;
  size_t offset = 0;
  for (const auto& [name, tensor] : state) {
    const auto options = tensor.options().requires_grad(false);
    if (!tensor.device().is_cpu() || byte_size(tensor) == 0) {
      out.emplace_back(name, torch::empty(tensor.sizes(), options));
      continue;
    }
    out.emplace_back(name, torch::from_blob(mapping->data() + offset, tensor.sizes(), [mapping](void*) {}, options));
    offset += aligned_size(tensor);
  }
  return out;
}

bool same_layout(const WeightSnapshot& snapshot, const WeightSnapshot& state) {
  if (snapshot.size() != state.size()) return false;
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& a = snapshot[i].second;
    const auto& b = state[i].second;
    if (snapshot[i].first != state[i].first || !a.defined() || a.sizes() != b.sizes() ||
        a.scalar_type() != b.scalar_type() || a.device() != b.device() || !a.is_contiguous()) {
      return false;
    }
  }
  return true;
}

}  // namespace

void snapshot_weights(const Net& net, WeightSnapshot& into) {
  torch::NoGradGuard no_grad;
  const auto state = named_state(net);
  if (!same_layout(into, state)) {
    into = allocate_snapshot(state);
  }
  for (size_t i = 0; i < state.size(); ++i) {
    into[i].second.copy_(state[i].second);
  }
}

WeightSnapshot snapshot_weights(const Net& net) {
  WeightSnapshot out;
  snapshot_weights(net, out);
  return out;
}

void restore_weights(Net& net, const WeightSnapshot& snapshot) {
  torch::NoGradGuard no_grad;
  auto state = named_state(net);
  if (state.size() != snapshot.size()) {
    throw CheckpointError("the weight snapshot has " + std::to_string(snapshot.size()) + " tensors, the net " +
                          std::to_string(state.size()));
  }
  for (size_t i = 0; i < state.size(); ++i) {
    state[i].second.copy_(snapshot[i].second);
  }
}

void save_snapshot(const WeightSnapshot& snapshot, const fs::path& path, const std::string& model, const Logs& logs) {
  torch::serialize::OutputArchive archive;
  archive.write("torchfit_format", c10::IValue(kCheckpointFormat));
  archive.write("kind", c10::IValue(std::string("weights")));
  archive.write("model", c10::IValue(model));
  c10::List<std::string> names;
  int64_t i = 0;
  for (const auto& [name, tensor] : snapshot) {
    names.push_back(name);
    archive.write("t" + std::to_string(i++), tensor.detach().to(torch::kCPU));
  }
  archive.write("names", c10::IValue(names));
  c10::List<std::string> keys;
  c10::List<double> values;
  for (const auto& [k, v] : logs) {
    keys.push_back(k);
    values.push_back(v);
  }
  archive.write("log_keys", c10::IValue(keys));
  archive.write("log_values", c10::IValue(values));
  std::ostringstream payload;
  archive.save_to(payload);
  atomic_write_bytes(path, envelope::wrap(kWeightsKind, static_cast<uint32_t>(kCheckpointFormat), payload.str()),
                     "checkpoint");
}

void save_weights(const Net& net, const fs::path& path, const std::string& model, const Logs& logs) {
  save_snapshot(named_state(net), path, model.empty() ? net.name() : model, logs);
}

void assign_weights(Net& net, const std::map<std::string, torch::Tensor>& stored, const std::string& source) {
  std::vector<std::string> problems;
  auto state = named_state(net);
  for (const auto& [name, tensor] : state) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      problems.push_back(name + " " + shape_string(tensor.sizes()) + " is missing from it");
    } else if (it->second.sizes() != tensor.sizes()) {
      problems.push_back(name + ": saved " + shape_string(it->second.sizes()) + ", model " +
                         shape_string(tensor.sizes()));
    }
  }
  for (const auto& [name, tensor] : stored) {
    bool known = false;
    for (const auto& s : state) {
      known = known || s.first == name;
    }
    if (!known) {
      problems.push_back(name + " " + shape_string(tensor.sizes()) + " is saved but not in the model");
    }
  }
  if (!problems.empty()) {
    std::string msg = source + " does not fit this net: ";
    for (size_t i = 0; i < problems.size(); ++i) {
      msg += (i ? "; " : "") + problems[i];
    }
    throw CheckpointError(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : state) {
    tensor.copy_(stored.at(name));
  }
}

CheckpointInfo read_checkpoint_info(const fs::path& path) {
  uint32_t format = 0;
  auto archive = open_archive(path, format);
  return read_info(archive, path);
}

std::map<std::string, torch::Tensor> read_checkpoint_weights(const fs::path& path, CheckpointInfo* info_out) {
  uint32_t format = 0;
  auto archive = open_archive(path, format);
  auto info = read_info(archive, path);
  c10::IValue names_value;
  if (!archive.try_read("names", names_value) || !names_value.isList()) {
    throw CheckpointError("checkpoint '" + path.string() + "' holds no weights (damaged?)");
  }
  auto names = names_value.toList();
  std::map<std::string, torch::Tensor> stored;
  for (size_t i = 0; i < names.size(); ++i) {
    torch::Tensor t;
    if (!archive.try_read("t" + std::to_string(i), t)) {
      throw CheckpointError("checkpoint '" + path.string() + "' lacks tensor " + std::to_string(i) + " (damaged?)");
    }
    stored.emplace(names.get(i).toStringRef(), t);
  }
  if (info_out) *info_out = std::move(info);
  return stored;
}

CheckpointInfo load_weights(Net& net, const fs::path& path, const std::string& model_name) {
  CheckpointInfo info;
  const auto stored = read_checkpoint_weights(path, &info);
  const std::string& model = model_name.empty() ? net.name() : model_name;
  if (!model.empty() && !info.model.empty() && info.model != model) {
    throw CheckpointError("checkpoint '" + path.string() + "' was written for model '" + info.model +
                          "', not '" + model + "'; use --model " + info.model + " or another checkpoint");
  }
  assign_weights(net, stored, "checkpoint '" + path.string() + "'" +
                                (info.model.empty() ? std::string() : " (model '" + info.model + "')"));
  return info;
}

}  // namespace torchfit
