// Weights in and out: export formats, safetensors, format detection, init_weights.
#include "torchfit/weights.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "torchfit/checkpoint.hpp"
#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"
#include "torchfit/text.hpp"
#include "weights_detail.hpp"

namespace torchfit {
namespace fs = std::filesystem;

namespace {

const std::vector<std::pair<WeightsFormat, const char*>> kFormats = {{WeightsFormat::Torchfit, "torchfit"},
                                                                     {WeightsFormat::LibTorch, "libtorch"},
                                                                     {WeightsFormat::StateDict, "state_dict"},
                                                                     {WeightsFormat::SafeTensors, "safetensors"}};

// The safetensors names of the types a net holds.
const std::vector<std::pair<torch::ScalarType, const char*>> kDtypes = {
    {torch::kDouble, "F64"}, {torch::kFloat, "F32"}, {torch::kHalf, "F16"}, {torch::kBFloat16, "BF16"},
    {torch::kLong, "I64"},   {torch::kInt, "I32"},   {torch::kShort, "I16"}, {torch::kChar, "I8"},
    {torch::kByte, "U8"},    {torch::kBool, "BOOL"}};

std::string read_bytes(const fs::path& path, const std::string& what) {
  const std::string name = what + " '" + path.string() + "'";
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError(name + " does not exist");
  if (fs::is_directory(path, ec)) throw CheckpointError(name + " is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(name + " cannot be opened: " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw CheckpointError(name + " cannot be read: " + std::strerror(errno));
  if (bytes.empty()) throw CheckpointError(name + " is empty");
  return bytes;
}

// Every tensor of a LibTorch archive (torch::save of a module, or a TorchScript module), by
// its dotted name.
void collect(torch::serialize::InputArchive& archive, const std::string& prefix, NamedTensors& out, int depth) {
  if (depth > 64) throw CheckpointError("modules nested deeper than 64 levels");
  for (const auto& key : archive.keys()) {
    torch::Tensor t;
    if (archive.try_read(key, t)) {
      out[prefix + key] = t;
      continue;
    }
    torch::serialize::InputArchive child;
    if (archive.try_read(key, child)) collect(child, prefix + key + ".", out, depth + 1);
  }
}

NamedTensors read_libtorch(const fs::path& path) {
  // LibTorch's reader is not safe on damaged input: every entry's checksum is checked first.
  const std::string bytes = read_bytes(path, "weights file");
  try {
    for (const auto& [name, entry] : detail::read_zip(bytes)) {
      if (!detail::crc_matches(bytes, entry)) throw detail::Refused("entry '" + name + "' does not match its checksum");
    }
  } catch (const detail::Refused& e) {
    throw CheckpointError("'" + path.string() + "' is damaged: " + e.what());
  }
  NamedTensors out;
  try {
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes);
    archive.load_from(in, torch::kCPU);
    collect(archive, "", out, 0);
  } catch (const c10::Error& e) {
    throw CheckpointError("'" + path.string() + "' cannot be read as a LibTorch archive: " + e.what_without_backtrace());
  }
  if (out.empty()) throw CheckpointError("'" + path.string() + "' is a LibTorch archive that holds no tensors");
  return out;
}

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw CheckpointError(what + " has a negative dimension");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / static_cast<uint64_t>(d)) {
      throw CheckpointError(what + " has more elements than fit in memory");
    }
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

}  // namespace

std::string format_name(WeightsFormat format) {
  for (const auto& [f, name] : kFormats) {
    if (f == format) return name;
  }
  return "?";
}

WeightsFormat parse_weights_format(const std::string& text, const std::string& option) {
  std::string all;
  for (const auto& [f, name] : kFormats) {
    if (text == name) return f;
    all += (all.empty() ? "" : ", ") + std::string(name);
  }
  throw ConfigError(option + " must be one of " + all + ", got '" + text + "'");
}

NamedTensors named_tensors(const Net& net) {
  NamedTensors out;
  for (const auto& p : net.module().named_parameters()) out[p.key()] = p.value().detach().to(torch::kCPU).contiguous();
  for (const auto& b : net.module().named_buffers()) out[b.key()] = b.value().detach().to(torch::kCPU).contiguous();
  return out;
}

void export_weights(const Net& net, const fs::path& path, WeightsFormat format,
                    const std::map<std::string, std::string>& metadata) {
  switch (format) {
    case WeightsFormat::Torchfit:
      save_weights(net, path);
      return;
    case WeightsFormat::LibTorch: {
      // What torch::save(net, file) writes, read back by torch::load(net, file); on the CPU.
      torch::serialize::OutputArchive archive;
      net.module().save(archive);
      std::ostringstream out;
      archive.save_to(out);
      atomic_write_bytes(path, out.str(), "exported weights");
      return;
    }
    case WeightsFormat::StateDict:
      // Not torch::pickle_save: its typed dict needs a global Python's weights_only=True refuses.
      save_state_dict(named_tensors(net), path);
      return;
    case WeightsFormat::SafeTensors:
      save_safetensors(named_tensors(net), path, metadata);
      return;
  }
}

void save_safetensors(const NamedTensors& tensors, const fs::path& path, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw CheckpointError("a tensor cannot be named __metadata__ in safetensors");
    const char* dtype = nullptr;
    for (const auto& [type, text] : kDtypes) {
      if (type == tensor.scalar_type()) dtype = text;
    }
    if (!dtype) throw CheckpointError("tensor '" + name + "' has a type safetensors cannot hold (" + std::string(c10::toString(tensor.scalar_type())) + ")");
    const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
    const auto begin = data.size();
    data.append(static_cast<const char*>(cpu.data_ptr()), cpu.numel() * cpu.element_size());
    header[name] = {{"dtype", dtype}, {"shape", cpu.sizes().vec()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff));
  out += text;
  out += data;
  atomic_write_bytes(path, out, "safetensors file");
}

namespace {

// A JSON list of whole numbers that fit T. nlohmann converts a float (1e30) or a negative number
// to an integer type without a check, which is undefined behaviour: refused here first.
template <typename T>
std::vector<T> whole_numbers(const nlohmann::json& list, const std::string& what) {
  if (!list.is_array()) throw CheckpointError(what + " is not a list");
  std::vector<T> out;
  for (const auto& item : list) {
    const bool fits = std::is_signed<T>::value ? item.is_number_integer() : item.is_number_unsigned();
    if (!fits) throw CheckpointError(what + " holds " + item.dump() + ", not a whole number of 0 or more");
    out.push_back(item.get<T>());
  }
  return out;
}

}  // namespace

NamedTensors parse_safetensors(const std::string& bytes, const std::string& name) {
  const std::string what = "'" + name + "' is not a safetensors file torchfit can read: ";
  if (bytes.size() < 8) throw CheckpointError(what + "shorter than its 8-byte header size");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (n > 100'000'000 || n > bytes.size() - 8) {
    throw CheckpointError(what + "its header size (" + std::to_string(n) + " bytes) is past the end of the file");
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(what + "its header is not JSON (" + e.what() + ")");
  }
  if (!header.is_object()) throw CheckpointError(what + "its header is not a JSON object");
  const uint64_t buffer = bytes.size() - 8 - n;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  NamedTensors out;
  for (const auto& [key, info] : header.items()) {
    if (key == "__metadata__") continue;
    const std::string t = "tensor '" + key + "'";
    try {
      const std::string dtype = info.at("dtype").get<std::string>();
      const auto shape = whole_numbers<int64_t>(info.at("shape"), what + t + "'s shape");
      const auto offsets = whole_numbers<uint64_t>(info.at("data_offsets"), what + t + "'s data offsets");
      std::optional<torch::ScalarType> type;
      for (const auto& [ty, text] : kDtypes) {
        if (dtype == text) type = ty;
      }
      if (!type) throw CheckpointError(what + t + " has dtype '" + dtype + "', which torchfit does not read");
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > buffer) {
        throw CheckpointError(what + t + " has data offsets outside the file's data");
      }
      const uint64_t numel = checked_numel(shape, what + t);
      const auto elem = static_cast<uint64_t>(c10::elementSize(*type));
      if (numel > (offsets[1] - offsets[0]) / elem || numel * elem != offsets[1] - offsets[0]) {
        throw CheckpointError(what + t + " has " + std::to_string(offsets[1] - offsets[0]) + " bytes for shape " +
                              shape_string(shape) + " of " + dtype);
      }
      auto tensor = torch::empty(shape, torch::TensorOptions().dtype(*type));
      if (numel) std::memcpy(tensor.data_ptr(), bytes.data() + 8 + n + offsets[0], numel * elem);
      out[key] = tensor;
      spans.push_back({offsets[0], offsets[1], key});
    } catch (const nlohmann::json::exception& e) {
      throw CheckpointError(what + t + " is malformed (" + e.what() + ")");
    }
  }
  // The spec: the tensors cover the data exactly, without overlaps or holes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t next = 0;
  for (const auto& s : spans) {
    if (s.begin != next) throw CheckpointError(what + "tensor '" + s.name + "' overlaps another or leaves a hole before it");
    next = s.end;
  }
  if (next != buffer) throw CheckpointError(what + std::to_string(buffer - next) + " bytes after the last tensor");
  if (out.empty()) throw CheckpointError(what + "it holds no tensors");
  return out;
}

void save_state_dict(const NamedTensors& tensors, const fs::path& path) {
  atomic_write_bytes(path, detail::state_dict_bytes(tensors), "state_dict file");
}

NamedTensors read_safetensors(const fs::path& path) {
  return parse_safetensors(read_bytes(path, "safetensors file"), path.string());
}

NamedTensors read_state_dict(const fs::path& path) {
  return parse_state_dict(read_bytes(path, "state_dict file"), path.string());
}

WeightsFormat detect_weights_format(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError("weights file '" + path.string() + "' does not exist");
  if (fs::is_directory(path, ec)) throw CheckpointError("weights file '" + path.string() + "' is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  std::string head(16, '\0');
  in.read(head.data(), 16);
  head.resize(static_cast<size_t>(in.gcount()));
  const auto size = fs::file_size(path, ec);
  if (head.rfind("TORCHFIT-WEIGHTS", 0) == 0) return WeightsFormat::Torchfit;
  if (head.rfind(std::string("TORCHFIT-STATE\0\0", 16), 0) == 0) {
    throw CheckpointError("'" + path.string() + "' is a torchfit state file; give the run's checkpoint (the same path "
                          "without .state)");
  }
  if (head.rfind("PK\x03\x04", 0) == 0) {
    // torch.save's zip holds data.pkl and data/; a LibTorch archive (torch::save of a module,
    // a TorchScript module) holds code/ and constants.pkl too.
    const std::string bytes = read_bytes(path, "weights file");
    try {
      for (const auto& [name, entry] : detail::read_zip(bytes)) {
        if (name.find("/code/") != std::string::npos || name.find("/constants.pkl") != std::string::npos) {
          return WeightsFormat::LibTorch;
        }
      }
    } catch (const detail::Refused& e) {
      throw CheckpointError("'" + path.string() + "' is a damaged zip archive: " + e.what());
    }
    return WeightsFormat::StateDict;
  }
  if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) return WeightsFormat::StateDict;  // legacy: refused there
  if (head.size() >= 9 && head[8] == '{') {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(head[static_cast<size_t>(i)]);
    if (!ec && n <= size - 8) return WeightsFormat::SafeTensors;
  }
  throw CheckpointError("'" + path.string() +
                        "' is none of the weight formats torchfit reads: a torchfit checkpoint, a LibTorch archive "
                        "(torchfit export --format libtorch), a PyTorch state_dict (torch.save) or safetensors");
}

NamedTensors read_weights(const fs::path& path) {
  switch (detect_weights_format(path)) {
    case WeightsFormat::Torchfit: return read_checkpoint_weights(path);
    case WeightsFormat::LibTorch: return read_libtorch(path);
    case WeightsFormat::StateDict: return read_state_dict(path);
    case WeightsFormat::SafeTensors: return read_safetensors(path);
  }
  throw CheckpointError("'" + path.string() + "': unknown format");
}

std::string InitReport::to_string() const {
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > 8) s += ", ... (" + std::to_string(names.size()) + " in all)";
    return s;
  };
  std::string s = "loaded " + std::to_string(loaded.size()) + " of the net's " +
                  std::to_string(loaded.size() + missing.size()) + " tensors";
  if (!missing.empty()) s += "; missing from the file (kept as initialized): " + list(missing);
  if (!unexpected.empty()) s += "; in the file but not the net (ignored): " + list(unexpected);
  return s;
}

InitReport init_weights(Net& net, const NamedTensors& tensors, bool strict, const std::string& source) {
  InitReport report;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // net tensor <- file tensor
  std::vector<std::string> known;
  auto visit = [&](const std::string& name, const torch::Tensor& target) {
    known.push_back(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      report.missing.push_back(name);
      return;
    }
    if (it->second.sizes() != target.sizes()) {
      throw CheckpointError(source + ": tensor '" + name + "' has shape " + shape_string(it->second.sizes()) +
                            " in the file, " + shape_string(target.sizes()) + " in the net");
    }
    report.loaded.push_back(name);
    copies.emplace_back(target, it->second);
  };
  for (const auto& p : net.module().named_parameters()) visit(p.key(), p.value());
  for (const auto& b : net.module().named_buffers()) visit(b.key(), b.value());
  std::sort(known.begin(), known.end());
  for (const auto& [name, t] : tensors) {
    if (!std::binary_search(known.begin(), known.end(), name)) report.unexpected.push_back(name);
  }
  if (report.loaded.empty()) {
    throw CheckpointError(source + ": no tensor name matches the net's (" + report.to_string() +
                          "); is it a checkpoint of another model?");
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    throw CheckpointError(source + " does not match the net exactly (" + report.to_string() + ")");
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value.to(target.device(), target.scalar_type()));
  return report;
}

InitReport init_weights(Net& net, const fs::path& path, bool strict) {
  return init_weights(net, read_weights(path), strict, "weights file '" + path.string() + "'");
}

}  // namespace torchfit
