// libFuzzer harness: the numeric CSV reader (predict's input files).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include <torchfit/csv.hpp>
#include <torchfit/errors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const auto columns : {std::optional<int64_t>{}, std::optional<int64_t>{2}}) {
    try {
      std::istringstream in(text);
      const auto table = torchfit::read_numeric_csv(in, "fuzz.csv", columns);
      // A table that was accepted is well-formed: 2-D, every row as wide as the header.
      if (table.values.dim() != 2) __builtin_trap();
      if (!table.header.empty() && static_cast<int64_t>(table.header.size()) != table.values.size(1)) __builtin_trap();
      if (columns && table.values.size(1) != *columns) __builtin_trap();
    } catch (const torchfit::DataError&) {
      // Refused with a message naming the line and column: expected for bad input.
    }
  }
  return 0;
}
