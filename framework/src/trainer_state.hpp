// The trainer's private state-file helpers: the background writer and a state being resumed.
#pragma once

#include <filesystem>
#include <future>
#include <string>

#include "torchfit/state.hpp"
#include "torchfit/trainer.hpp"

namespace torchfit {

/// Writes state files in the background, one at a time: the bytes are serialized on the
/// training thread (a consistent copy), the file write, fsync and rename happen here.
/// A failed write is raised at the next save() or wait().
class Trainer::StateSaver {
 public:
  explicit StateSaver(std::filesystem::path path);
  ~StateSaver();
  StateSaver(const StateSaver&) = delete;
  StateSaver& operator=(const StateSaver&) = delete;

  bool enabled() const { return !path_.empty(); }
  void save(std::string bytes);
  void wait();

 private:
  std::filesystem::path path_;
  std::future<void> pending_;
};

struct Trainer::Resume {
  std::filesystem::path path;
  StateInfo info;
  torch::serialize::InputArchive archive;
};

/// One fit: its settings on the trainer (precision, loss scaler, communicator: put back when
/// the fit ends, however it ends), the callbacks and data this process runs, the state writer
/// and the state being resumed. Made after the options are checked; a bad state file throws
/// here, before anything has changed.
struct Trainer::FitRun {
  FitRun(Trainer& trainer, const FitOptions& options, const DataLoader& train, const DataLoader& val);

  /// Puts the trainer's per-fit settings back (a member, so a throwing constructor does too).
  struct Settings {
    Trainer& trainer;
    ~Settings();
  } settings;
  const FitOptions& options;
  int rank, world;
  Callbacks callbacks;    // those that run on this process (rank_zero_only ones on rank 0)
  DataLoader train, val;  // on the trainer's device; data-parallel: this process's shard
  bool has_val;
  StateSaver saver;                // writes nothing unless options.state_path() (on rank 0)
  std::unique_ptr<Resume> resume;  // the state file being continued, or null
};

}  // namespace torchfit
