// libFuzzer harness: the IDX reader (images and labels of MNIST-style datasets), gzip'd or not.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <torchfit/errors.hpp>
#include <torchfit/idx.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // read_idx reads files (through zlib's gzread): each input goes through one.
  static const std::filesystem::path path = [] {
    const std::filesystem::path shm("/dev/shm");
    const auto dir = std::filesystem::exists(shm) ? shm : std::filesystem::temp_directory_path();
    return dir / ("fuzz_idx." + std::to_string(::getpid()));
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto t = torchfit::read_idx(path);
    // Whatever was accepted has a rank IDX allows, the one its header says.
    if (t.dim() < 1 || t.dim() > 255) __builtin_trap();
    if (data[0] == 0 && data[1] == 0 && t.dim() != data[3]) __builtin_trap();  // a plain file: its header
  } catch (const torchfit::DataError&) {
  }
  return 0;
}
