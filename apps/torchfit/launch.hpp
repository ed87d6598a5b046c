// `torchfit train --nproc N`: starts N worker processes on this machine, like torchrun.
#pragma once

#include <chrono>

namespace torchfit::cli {

/// Runs this same command line N times as worker processes with RANK, WORLD_SIZE, LOCAL_RANK,
/// MASTER_ADDR (127.0.0.1), MASTER_PORT (a free port) and, unless set, OMP_NUM_THREADS (the
/// cores divided among the workers) set, forwards SIGINT and SIGTERM to
/// them, and waits. When one fails, the others get `grace` to fail on their own (they do once
/// a collective with it fails) before they are killed. Returns 0 when all succeed, else the
/// first failure's exit code (128 + signal for a killed worker).
int launch_workers(int argc, char** argv, int nproc, std::chrono::seconds grace);

}  // namespace torchfit::cli
