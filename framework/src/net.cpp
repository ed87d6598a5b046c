// Net: the one-tensor call and the messages of the forward adapter.
#include "torchfit/net.hpp"

#include "torchfit/errors.hpp"

namespace torchfit {

namespace detail {

std::string output_name(const std::vector<std::string>& names, size_t i, size_t count) {
  if (i < names.size()) return names[i];
  return count == 1 ? "output" : "output_" + std::to_string(i);
}

void wrong_input_count(size_t wanted, const Batch& batch) {
  const size_t have = batch.count(Role::Input);
  throw DataError("the net's forward takes " + std::to_string(wanted) + " input" + (wanted == 1 ? "" : "s") +
                  " but the batch has " + std::to_string(have) + " (" + batch.describe() +
                  "); give the dataset one input field per forward parameter, in order, or write "
                  "forward(const torchfit::Batch&) to read the fields by name");
}

void wrong_output_names(size_t given, size_t count) {
  throw ConfigError("the net was given " + std::to_string(given) + " output names but its forward returns " +
                    std::to_string(count) + " output" + (count == 1 ? "" : "s"));
}

}  // namespace detail

torch::Tensor Net::forward(const torch::Tensor& x) const {
  auto out = forward_(Batch(x), output_names_);
  if (out.count() != 1) {
    throw DataError("forward(Tensor) needs a net of one output, but this one returned " + std::to_string(out.count()) +
                    " (" + out.describe() + "); call forward(Batch) to get them all");
  }
  return out[size_t{0}];
}

}  // namespace torchfit
