// libFuzzer harness: the readers of weights from outside torchfit, which see files anyone may
// hand over: PyTorch state_dict files (the zip reader and the restricted unpickler) and
// safetensors. Any input must end in a torchfit::Error or a result, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include <torchfit/weights.hpp>
#include <torchfit/errors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    (void)torchfit::parse_state_dict(bytes, "fuzz");
  } catch (const torchfit::Error&) {
  }
  try {
    (void)torchfit::parse_safetensors(bytes, "fuzz");
  } catch (const torchfit::Error&) {
  }
  return 0;
}
