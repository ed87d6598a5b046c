// libFuzzer harness: the runner's config-file parser and the resume settings comparison.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include <torchfit/errors.hpp>

#include "../../apps/torchfit/config_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::istringstream in(text);
    const auto entries = torchfit::cli::parse_config(in, "fuzz.ini");
    for (const auto& e : entries) {
      // Every entry has a key and a line inside the text.
      if (e.key.empty() || e.line < 1) __builtin_trap();
    }
    // Comparing with itself finds no difference; with the empty text it must not crash.
    if (!torchfit::cli::resume_differences(text, text).empty()) __builtin_trap();
    (void)torchfit::cli::resume_differences(text, "");
  } catch (const torchfit::ConfigError&) {
    // A clear refusal is the expected outcome for malformed text.
  }
  return 0;
}
