// Data-parallel training across processes on PyTorch's own engine: c10d's TCPStore for the
// rendezvous and ProcessGroupGloo for the collectives.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torchfit/export.hpp"

namespace torchfit {

/// The collectives the trainer and the metrics need, across the processes of one run. Every
/// process must make the same calls in the same order; a call fails with DistributedError when
/// another process died or did not answer within the timeout, never waits forever.
class TORCHFIT_EXPORT Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Sums each tensor across processes, in place (same shapes and dtypes everywhere).
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  /// Every process's rows of `t` (dim 0; the row counts may differ, the other sizes may not),
  /// concatenated in rank order, on every process.
  virtual torch::Tensor all_gather_rows(const torch::Tensor& t) = 0;
  /// Overwrites each tensor on every process with rank `root`'s.
  virtual void broadcast(std::vector<torch::Tensor>& tensors, int root = 0) = 0;

  /// One tensor summed in place.
  void all_reduce_sum(torch::Tensor& t);
  /// Whether `flag` is true on any process.
  bool any(bool flag);
};

/// Where and how to meet the other processes. The names follow torchrun's environment.
struct TORCHFIT_EXPORT DistributedOptions {
  int rank = 0;                 ///< RANK: 0 .. world_size-1; rank 0 hosts the store
  int world_size = 1;           ///< WORLD_SIZE
  int local_rank = 0;           ///< LOCAL_RANK: the process's index on its machine
  std::string master_addr = "127.0.0.1";  ///< MASTER_ADDR: rank 0's machine
  int master_port = 29500;      ///< MASTER_PORT
  /// How long any collective (and the rendezvous) may wait for the others before failing.
  std::chrono::milliseconds timeout = std::chrono::seconds(120);
};

/// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; nothing when WORLD_SIZE is
/// unset. Throws ConfigError for values that are not numbers or out of range.
TORCHFIT_EXPORT std::optional<DistributedOptions> distributed_from_env();

/// Whether this build has c10d's Gloo backend (Debian's LibTorch does).
TORCHFIT_EXPORT bool distributed_available();

/// Joins the process group: a TCPStore at master_addr:master_port (served by rank 0) and
/// ProcessGroupGloo over TCP. Returns when every process has joined; throws DistributedError
/// when they do not within the timeout or the build lacks Gloo.
TORCHFIT_EXPORT std::shared_ptr<Communicator> connect(const DistributedOptions& options);

/// `torchfit train --nproc N`, like torchrun: runs this program's command line N times as
/// worker processes with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR (127.0.0.1), MASTER_PORT (a
/// free port) and, unless set, OMP_NUM_THREADS (the cores divided among the workers) set, each
/// in its own process group; forwards SIGINT and SIGTERM to them, and waits. When one fails,
/// the others get `grace` to fail on their own (they do once a collective with it fails) before
/// they are killed. Returns 0 when all succeed, else the first failure's exit code (128 +
/// signal for a killed worker).
TORCHFIT_EXPORT int launch_workers(int argc, char** argv, int nproc, std::chrono::seconds grace);

/// Averages the gradients of `params` across processes: they are flattened into buckets of
/// about `bucket_bytes`, one all-reduce per bucket (so a net of many small tensors costs a few
/// collectives, not one per tensor). `extra` values (stop and skip flags) are summed in the
/// same batch of collectives, at no extra round trip, and returned. The all-reduce starts after
/// the backward pass: LibTorch's public C++ API has no hook that runs once a gradient is
/// accumulated (c10d's own Reducer reaches into autograd internals for one), so communication
/// does not overlap the backward pass (see docs/distributed.md).
class TORCHFIT_EXPORT GradientAverager {
 public:
  GradientAverager(std::shared_ptr<Communicator> comm, std::vector<torch::Tensor> params,
                   int64_t bucket_bytes = 25 << 20);
  /// Averages the gradients in place; returns `extra` summed over the processes.
  std::vector<double> average(const std::vector<double>& extra = {});
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  std::shared_ptr<Communicator> comm_;
  std::vector<torch::Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;  // indices into params_, grouped by dtype and size
};

}  // namespace torchfit
