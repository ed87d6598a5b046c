// The checksummed envelope of checkpoints and state files.
#include "envelope.hpp"

#include <boost/crc.hpp>

#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "torchfit/errors.hpp"

namespace torchfit::envelope {
namespace fs = std::filesystem;

namespace {

uint32_t crc32(const std::string& bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

template <typename T>
void put(std::string& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

template <typename T>
T get(const std::string& in, std::size_t offset) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<T>(static_cast<unsigned char>(in[offset + i])) << (8 * i);
  }
  return value;
}

}  // namespace

std::string wrap(const Kind& kind, uint32_t format, const std::string& payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  out.append(kind.magic, 16);
  put<uint32_t>(out, format);
  put<uint64_t>(out, payload.size());
  put<uint32_t>(out, crc32(payload));
  out += payload;
  return out;
}

std::string unwrap(const Kind& kind, const fs::path& path, uint32_t max_format, uint32_t& format) {
  const std::string name = std::string(kind.what) + " '" + path.string() + "'";
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError(name + " does not exist; " + kind.hint);
  if (fs::is_directory(path, ec)) throw CheckpointError(name + " is a folder, not a " + kind.what);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(name + " cannot be opened: " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw CheckpointError(name + " cannot be read: " + std::strerror(errno));
  if (bytes.empty()) throw CheckpointError(name + " is empty; it is not a torchfit " + kind.what);
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kind.magic, 16) != 0) {
    // Say what it is when it is another torchfit file.
    for (const char* other : {"TORCHFIT-WEIGHTS", "TORCHFIT-STATE\0\0"}) {
      if (bytes.size() >= 16 && std::memcmp(bytes.data(), other, 16) == 0) {
        throw CheckpointError(name + " is a torchfit " +
                              (other[9] == 'W' ? std::string("weights checkpoint") : std::string("state file")) +
                              ", not a " + kind.what);
      }
    }
    throw CheckpointError(name + " cannot be read: it is damaged or not a torchfit " + kind.what +
                          " (it does not start with torchfit's header)");
  }
  if (bytes.size() < kHeaderSize) {
    throw CheckpointError(name + " is damaged: truncated inside its header (" + std::to_string(bytes.size()) +
                          " bytes)");
  }
  format = get<uint32_t>(bytes, 16);
  if (format > max_format) {
    throw CheckpointError(name + " has format version " + std::to_string(format) + ", newer than this torchfit reads (" +
                          std::to_string(max_format) + "); use a newer torchfit");
  }
  const uint64_t length = get<uint64_t>(bytes, 20);
  if (bytes.size() - kHeaderSize != length) {
    throw CheckpointError(name + " is damaged: " + (bytes.size() - kHeaderSize < length ? "truncated, " : "") +
                          std::to_string(bytes.size() - kHeaderSize) + " bytes of data where its header says " +
                          std::to_string(length));
  }
  const uint32_t expected = get<uint32_t>(bytes, 28);
  bytes.erase(0, kHeaderSize);
  if (crc32(bytes) != expected) {
    throw CheckpointError(name + " is damaged: its checksum does not match its contents");
  }
  return bytes;
}

}  // namespace torchfit::envelope
