// State files: everything a fit needs to continue exactly where it stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "torchfit/export.hpp"
#include "torchfit/history.hpp"

namespace torchfit {

/// The first thing in every state file, and the format version this torchfit writes (it
/// reads this one and older, and refuses newer ones).
inline constexpr const char* kStateMagic = "torchfit-state";
inline constexpr int64_t kStateFormat = 1;

/// What a state file says about the run it continues (read without loading any tensor).
/// A state file holds: the net's parameters and buffers (and gradients mid-accumulation),
/// the optimizer with its per-parameter state, the scheduler, the position (epoch, batch,
/// global step), the epoch's running loss and metric sums, the history so far, every
/// callback's state_dict, the random generators (CPU, and CUDA when used) and the loader's
/// shuffle seed, plus the caller's configuration text. See docs/reliability.md.
struct TORCHFIT_EXPORT StateInfo {
  int64_t format = 0;
  std::string model;         ///< the net's name (the model plugin)
  std::string config;        ///< FitOptions::run_config of the run (the runner's resolved settings)
  int64_t epochs_done = 0;   ///< complete epochs (history rows)
  int64_t next_epoch = 1;    ///< the epoch a resume continues
  int64_t next_batch = 0;    ///< the first batch of next_epoch still to train (0: from the start)
  bool validating = false;   ///< next_epoch's training is done; its validation is not
  int64_t global_step = 0;   ///< optimizer steps taken
  bool finished = false;     ///< the run ended (completed its epochs, or stopped); false when interrupted
  bool stopped = false;      ///< a callback stopped it (early stopping, ...): a resume trains no further
  std::string stop_reason;   ///< why it stopped
  int64_t epochs = 0;        ///< the run's epoch limit
};

/// Reads a state file's header. Throws CheckpointError when the file is missing, empty,
/// truncated or damaged, not a torchfit state file, or from a newer torchfit.
TORCHFIT_EXPORT StateInfo read_state_info(const std::filesystem::path& path);

/// The history a state file holds: one row per complete epoch, as the run's history file has
/// them (with the stop reason of a stopped run). Throws CheckpointError as read_state_info does.
TORCHFIT_EXPORT History read_state_history(const std::filesystem::path& path);

}  // namespace torchfit
