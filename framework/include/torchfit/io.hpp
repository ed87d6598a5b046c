// Atomic file writes: a crash at any instant leaves either the old file or the new one.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

#include "torchfit/export.hpp"

namespace torchfit {

/// Writes `target` by calling `write(tmp)` on a temporary file in the same folder, then
/// fsync, rename over `target`, fsync the folder. On any failure the temporary file is
/// removed, `target` is untouched, and CheckpointError says what failed. Temporary files of
/// `target` left by a process that was killed mid-write are removed first.
TORCHFIT_EXPORT void atomic_replace(const std::filesystem::path& target,
                                    const std::function<void(const std::filesystem::path& tmp)>& write);
/// The same for text: `write(stream)` fills the file.
TORCHFIT_EXPORT void atomic_write_text(const std::filesystem::path& target,
                                       const std::function<void(std::ostream&)>& write);
/// The same for bytes already in memory; `what` ("state file") names the file in errors.
TORCHFIT_EXPORT void atomic_write_bytes(const std::filesystem::path& target, const std::string& bytes,
                                        const std::string& what);
/// Throws ConfigError unless `path` names a file (not empty, not a folder) whose folder exists
/// and is writable (checked before a long run).
TORCHFIT_EXPORT void check_writable_parent(const std::filesystem::path& path, const std::string& what);

}  // namespace torchfit
