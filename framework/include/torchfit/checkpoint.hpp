// Weights checkpoints: written atomically, read back with errors that name what does not fit.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

#include "torchfit/export.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

/// The version of the checkpoint format this torchfit writes; it reads this one and older.
inline constexpr int64_t kCheckpointFormat = 2;  // 2: in a checksummed envelope

/// What a checkpoint says about itself.
struct CheckpointInfo {
  int64_t format = 0;
  std::string model;  ///< the model plugin's name, or empty
  Logs logs;          ///< the epoch's logs when it was written (epoch, val_loss, ...)
};

/// Named copies of a net's parameters and buffers.
using WeightSnapshot = std::vector<std::pair<std::string, torch::Tensor>>;

/// Copies the net's parameters and buffers into memory (for restoring best weights fast).
/// Copies on the CPU live in one block mapped from the system, outside the heap the training
/// loop allocates from, so a snapshot kept across epochs does not slow the loop down.
TORCHFIT_EXPORT WeightSnapshot snapshot_weights(const Net& net);
/// The same into `into`, reusing its memory when it holds a snapshot of the same layout (names,
/// shapes, types, devices): what a callback that snapshots every epoch should call.
TORCHFIT_EXPORT void snapshot_weights(const Net& net, WeightSnapshot& into);
/// Copies a snapshot back into the net.
TORCHFIT_EXPORT void restore_weights(Net& net, const WeightSnapshot& snapshot);

/// Saves a snapshot (on any device) to `path` atomically, like save_weights. Safe to call from
/// another thread while training goes on: the snapshot is the caller's own copy.
TORCHFIT_EXPORT void save_snapshot(const WeightSnapshot& snapshot, const std::filesystem::path& path,
                                   const std::string& model = "", const Logs& logs = {});

/// Saves the net's parameters and buffers to `path` atomically (a crash mid-save leaves the
/// previous file intact). `model` (default: the net's name) and `logs` are stored alongside.
TORCHFIT_EXPORT void save_weights(const Net& net, const std::filesystem::path& path, const std::string& model = "",
                                  const Logs& logs = {});
/// Loads weights saved by save_weights into `net`. Throws CheckpointError when the file is
/// missing, damaged, from a newer torchfit, from another model (`model`, default the net's
/// name, differs from the name stored),
/// or when its parameters do not fit the net (each mismatch named with both shapes).
TORCHFIT_EXPORT CheckpointInfo load_weights(Net& net, const std::filesystem::path& path,
                                            const std::string& model = "");
/// Copies `stored` (name -> tensor) into the net's parameters and buffers. Throws
/// CheckpointError naming every missing, extra or differently shaped tensor, with `source`
/// ("checkpoint 'x.pt'") in front, before anything is copied.
TORCHFIT_EXPORT void assign_weights(Net& net, const std::map<std::string, torch::Tensor>& stored,
                                    const std::string& source);
/// A checkpoint's tensors by name, without a net; `info` receives what it says about itself.
TORCHFIT_EXPORT std::map<std::string, torch::Tensor> read_checkpoint_weights(const std::filesystem::path& path,
                                                                            CheckpointInfo* info = nullptr);
/// Reads only what a checkpoint says about itself.
TORCHFIT_EXPORT CheckpointInfo read_checkpoint_info(const std::filesystem::path& path);

}  // namespace torchfit
