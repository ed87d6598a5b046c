// summary(net, input): torchkeras' layer table (Layer (type), Output Shape, Param #, sizes in MB).
#pragma once

#include <torch/torch.h>

#include <ostream>
#include <string>
#include <vector>

#include "torchfit/batch.hpp"
#include "torchfit/export.hpp"
#include "torchfit/net.hpp"

namespace torchfit {

struct SummaryRow {
  std::string layer;         ///< "Linear-1"
  std::string output_shape;  ///< "[-1, 4]", or "?" where it cannot be known
  int64_t params = 0;
};

struct TORCHFIT_EXPORT Summary {
  std::vector<SummaryRow> rows;
  int64_t total_params = 0;
  int64_t trainable_params = 0;
  int64_t non_trainable_params = 0;
  double input_mb = 0;
  double forward_backward_mb = 0;  ///< negative when some output shape is unknown
  double params_mb = 0;
  /// The table, as torchkeras prints it.
  std::string to_string() const;
};

/// Runs `example_input` (with its batch dimension) through the net once, without grad and in
/// eval mode, and tabulates its layers. Output shapes are exact for nets built from
/// torch::nn::Sequential (nested too) and for single-layer nets; inside other modules, whose
/// forward() torchfit cannot see into, a layer's shape is shown as "?" rather than guessed.
TORCHFIT_EXPORT Summary summary(const Net& net, const torch::Tensor& example_input);
/// The same for a net of several inputs: `example` holds them (`Batch(Fields().add_input("image",
/// x).add_input("side", v))`, or a batch of the loader). The input size counts every input.
TORCHFIT_EXPORT Summary summary(const Net& net, const Batch& example);

TORCHFIT_EXPORT std::ostream& operator<<(std::ostream& out, const Summary& s);

}  // namespace torchfit
