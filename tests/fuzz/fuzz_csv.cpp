// libFuzzer harness: the CSV reader (training data and predict's input files).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include <torchfit/csv.hpp>
#include <torchfit/errors.hpp>

namespace {

void check(const torchfit::CsvData& d, const torchfit::CsvOptions& o) {
  // Whatever was accepted is well-formed: 2-D features, one name each, one target per row.
  if (d.features.dim() != 2 || d.features.size(0) < 1) __builtin_trap();
  if (static_cast<int64_t>(d.feature_names.size()) != d.features.size(1)) __builtin_trap();
  if (o.ignore_target && d.targets.defined()) __builtin_trap();
  if (!o.target.empty() && !o.ignore_target && (!d.targets.defined() || d.targets.size(0) != d.features.size(0))) __builtin_trap();
  if (!torch::isfinite(d.features).all().item<bool>()) __builtin_trap();
  if (o.expected_features && d.features.size(1) != *o.expected_features) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<torchfit::CsvOptions> variants(5);
  variants[1].expected_features = 2;
  variants[2].target = "1";
  variants[2].missing = torchfit::CsvMissing::Mean;
  variants[3].delimiter = ';';
  variants[3].header = torchfit::CsvHeader::Yes;
  variants[3].features = "1-2";
  variants[3].missing = torchfit::CsvMissing::Zero;
  variants[4].target = "label";  // predict's input: a target column to leave out when present
  variants[4].ignore_target = true;
  for (const auto& o : variants) {
    try {
      std::istringstream in(text);
      check(torchfit::read_csv(in, "fuzz.csv", o), o);
    } catch (const torchfit::DataError&) {
      // Refused with a message naming the line and column: expected for bad input.
    }
  }
  return 0;
}
