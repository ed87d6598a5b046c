// The library's version, compiled in so a stale header cannot lie about it.
#include "torchfit/version.hpp"

namespace torchfit {
std::string version() { return TORCHFIT_VERSION_STRING; }
}  // namespace torchfit
