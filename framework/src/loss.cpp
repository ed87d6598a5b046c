// Loss shape checks.
#include "torchfit/loss.hpp"

#include "torchfit/errors.hpp"
#include "torchfit/text.hpp"

namespace torchfit {

TargetShape Loss::targets_for(const std::string& module_name) {
  if (module_name.find("CrossEntropyLoss") != std::string::npos || module_name.find("NLLLoss") != std::string::npos) {
    return TargetShape::ClassIndices;
  }
  return TargetShape::Same;
}

void Loss::check(const torch::Tensor& preds, const torch::Tensor& targets) const {
  if (!targets.defined()) {
    throw DataError("loss '" + name_ + "' needs targets, but the batch has none");
  }
  const auto p = preds.sizes();
  const auto t = targets.sizes();
  switch (shape_) {
    case TargetShape::Any:
      return;
    case TargetShape::Same:
      if (p != t) {
        throw DataError("loss '" + name_ + "': predictions have shape " + shape_string(p) + " but targets have shape " +
                        shape_string(t) + "; they must be equal (reshape the targets, e.g. to [N, 1])");
      }
      return;
    case TargetShape::ClassIndices:
      if (p == t) {
        return;  // class probabilities
      }
      if (p.size() != t.size() + 1 || p.empty() || p[0] != t[0] ||
          !std::equal(t.begin() + 1, t.end(), p.begin() + 2)) {
        throw DataError("loss '" + name_ + "': predictions have shape " + shape_string(p) + " but targets have shape " +
                        shape_string(t) + "; class-index targets must have the predictions' shape without the class "
                        "dimension (predictions [N, C], targets [N])");
      }
      return;
  }
}

}  // namespace torchfit
