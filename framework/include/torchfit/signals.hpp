// Stop signals: SIGINT / SIGTERM ask a running fit to stop cleanly after the current batch.
#pragma once

#include "torchfit/export.hpp"

namespace torchfit {

/// Installs handlers for SIGINT and SIGTERM (the runner does; a library never does it for
/// you). The first signal only sets a flag: a running fit finishes its current batch, saves
/// its state file (FitOptions::state_path) and returns with Trainer::interrupted_by() set.
/// A second signal ends the process at once with exit code 128 + signal; files on disk stay
/// valid because every save is an atomic rename. Also ignores SIGXFSZ, so writing past a
/// file-size limit fails with an error (EFBIG) instead of killing the process.
TORCHFIT_EXPORT void install_stop_signal_handlers();

/// The signal number received since the last clear (0 when none). Cheap: one atomic load.
TORCHFIT_EXPORT int stop_signal() noexcept;

/// Forgets a received signal (tests; a program that wants to train again after a stop).
TORCHFIT_EXPORT void clear_stop_signal() noexcept;

/// "SIGINT", "SIGTERM", or "signal N".
TORCHFIT_EXPORT const char* signal_name(int signal) noexcept;

}  // namespace torchfit
