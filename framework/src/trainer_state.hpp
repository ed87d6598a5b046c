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

}  // namespace torchfit
