// Weights in and out of torchfit: export to LibTorch, PyTorch and safetensors files, and start a
// net from weights trained elsewhere. See docs/deploy.md.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "torchfit/export.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

/// Tensors by name: "0.weight", "features.1.running_mean", ... (LibTorch's names, which are
/// torch.nn's for Sequential, Linear, Conv2d, BatchNorm2d and the like).
using NamedTensors = std::map<std::string, torch::Tensor>;

/// The files weights travel in.
enum class WeightsFormat {
  Torchfit,     ///< a torchfit checkpoint (model_checkpoint, save_weights)
  LibTorch,     ///< torch::save(net, file): read by torch::load(net, file) in any LibTorch program
  StateDict,    ///< PyTorch's torch.save(model.state_dict(), file): read by torch.load in Python
  SafeTensors,  ///< Hugging Face's safetensors: a JSON header and the raw tensors, no code
};

/// "torchfit", "libtorch", "state_dict", "safetensors".
TORCHFIT_EXPORT std::string format_name(WeightsFormat format);
/// The inverse; throws ConfigError naming `option` and the formats for anything else.
TORCHFIT_EXPORT WeightsFormat parse_weights_format(const std::string& text, const std::string& option);

/// The net's parameters and buffers, by name, as contiguous CPU copies.
TORCHFIT_EXPORT NamedTensors named_tensors(const Net& net);

/// Writes the net's weights to `path` in `format` (atomically: a failure leaves no file).
/// `metadata` goes into a safetensors header's __metadata__ (other formats have no place for it).
TORCHFIT_EXPORT void export_weights(const Net& net, const std::filesystem::path& path, WeightsFormat format,
                                    const std::map<std::string, std::string>& metadata = {});

/// Writes tensors as safetensors (little-endian, the header padded to 8 bytes), atomically.
TORCHFIT_EXPORT void save_safetensors(const NamedTensors& tensors, const std::filesystem::path& path,
                                      const std::map<std::string, std::string>& metadata = {});
/// Reads a safetensors file, checking every offset, shape and type; throws CheckpointError.
TORCHFIT_EXPORT NamedTensors read_safetensors(const std::filesystem::path& path);
/// The same from bytes in memory; `name` is what messages call them.
TORCHFIT_EXPORT NamedTensors parse_safetensors(const std::string& bytes, const std::string& name);

/// Writes tensors as Python's torch.save(model.state_dict(), f) does (an OrderedDict of names to
/// tensors), atomically: torch.load(f, weights_only=True) reads it, load_state_dict takes it.
TORCHFIT_EXPORT void save_state_dict(const NamedTensors& tensors, const std::filesystem::path& path);

/// Reads a file written by Python's torch.save(state_dict, f) (a dict or an OrderedDict of
/// names to tensors, the zip format of PyTorch 1.6 and later) or by torch::pickle_save, with a
/// reader of its own that allows only what a state_dict holds, as Python's weights_only=True:
/// the globals collections.OrderedDict, torch._utils._rebuild_tensor_v2 /
/// _rebuild_parameter and the torch.*Storage types. Any other (os.system, ...) is refused and
/// nothing is ever run. A dict that holds a "state_dict" or "model_state_dict" dict (Lightning's
/// checkpoints, common training scripts) gives that one. Throws CheckpointError.
TORCHFIT_EXPORT NamedTensors read_state_dict(const std::filesystem::path& path);
/// The same from bytes in memory.
TORCHFIT_EXPORT NamedTensors parse_state_dict(const std::string& bytes, const std::string& name);

/// Which format a file holds, from its first bytes; throws CheckpointError for none of them.
TORCHFIT_EXPORT WeightsFormat detect_weights_format(const std::filesystem::path& path);
/// Reads the tensors of a file in any of the formats (detected).
TORCHFIT_EXPORT NamedTensors read_weights(const std::filesystem::path& path);

/// What init_weights did.
struct TORCHFIT_EXPORT InitReport {
  std::vector<std::string> loaded;      ///< in the file and the net, copied
  std::vector<std::string> missing;     ///< in the net, not in the file: kept as initialized
  std::vector<std::string> unexpected;  ///< in the file, not in the net: ignored
  /// "loaded 4 of 6 tensors; missing: a, b; unexpected: c" (names capped at 8 per list).
  std::string to_string() const;
};

/// Copies the tensors of `tensors` whose names the net has into its parameters and buffers
/// (converted to their type and device). A tensor whose shape differs is always an error naming
/// it; `strict` also refuses missing and unexpected names; nothing matching at all is an error.
/// Nothing is copied unless all checks pass. `source` names the file in messages.
TORCHFIT_EXPORT InitReport init_weights(Net& net, const NamedTensors& tensors, bool strict,
                                        const std::string& source);
/// read_weights then init_weights.
TORCHFIT_EXPORT InitReport init_weights(Net& net, const std::filesystem::path& path, bool strict = false);

}  // namespace torchfit
