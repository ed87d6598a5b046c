// The envelope around every file torchfit writes with LibTorch's serializer (weights
// checkpoints, state files): a fixed header with a magic string, the format version, the
// payload's length and its CRC-32. LibTorch's reader is not safe on damaged input (a flipped
// byte in an archive's embedded TorchScript can crash it), so a file is checked whole
// before LibTorch sees a byte of it.
//
//   bytes  0..15  magic, 16 bytes ("TORCHFIT-WEIGHTS", "TORCHFIT-STATE\0\0")
//   bytes 16..19  format version, uint32 little-endian
//   bytes 20..27  payload length, uint64 little-endian
//   bytes 28..31  CRC-32 of the payload, uint32 little-endian
//   bytes 32..    the payload: a LibTorch archive (zip)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace torchfit::envelope {

inline constexpr std::size_t kHeaderSize = 32;

/// What a file is, for the header and for messages.
struct Kind {
  const char* magic;  ///< exactly 16 bytes (padded with NULs)
  const char* what;   ///< "checkpoint", "state file"
  const char* hint;   ///< what to do when the file is missing
};

/// Header + payload.
std::string wrap(const Kind& kind, uint32_t format, const std::string& payload);

/// The payload of `path`, after every check: the file exists, is not empty, has the magic,
/// a format not newer than `max_format`, its full length and the right checksum. Throws
/// CheckpointError saying which check failed. `format` receives the file's version.
std::string unwrap(const Kind& kind, const std::filesystem::path& path, uint32_t max_format, uint32_t& format);

}  // namespace torchfit::envelope
