// Inside the framework: the zip reader shared by the state_dict reader and the LibTorch
// archive check (weights.cpp).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "torchfit/weights.hpp"

namespace torchfit::detail {

/// What is wrong with a file the weights readers refuse (said after its name).
class Refused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where one stored entry's bytes are in the file.
struct ZipEntry {
  uint64_t offset = 0, size = 0;  // of the bytes in the file
  uint32_t crc = 0;
  bool deflated = false;  // else stored
  uint64_t unpacked = 0;  // the size once inflated
};

/// name -> entry, for every entry of the zip archive in `bytes` (zip64 included), each checked
/// to lie inside the file, stored or deflated. Throws Refused.
std::unordered_map<std::string, ZipEntry> read_zip(const std::string& bytes);
/// What torch.save(state_dict, f) writes for these tensors: a zip holding the pickle of an
/// OrderedDict of tensors, each tensor's data in its own entry.
std::string state_dict_bytes(const NamedTensors& tensors);
/// Whether an entry's bytes match their CRC-32.
bool crc_matches(const std::string& bytes, const ZipEntry& entry);

}  // namespace torchfit::detail
