// Out-of-line destructors: the error types' code lives in libtorchfit (see errors.hpp).
#include "torchfit/errors.hpp"

namespace torchfit {

Error::~Error() = default;
ConfigError::~ConfigError() = default;
DataError::~DataError() = default;
PluginError::~PluginError() = default;
CheckpointError::~CheckpointError() = default;
CallbackError::~CallbackError() = default;
DistributedError::~DistributedError() = default;

}  // namespace torchfit
