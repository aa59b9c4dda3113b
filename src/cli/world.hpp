// The ranks a command runs on: MPI only under a launcher (a plain run needs no MPI
// runtime and gets a one-rank communicator), and NCCL between GPU ranks when asked for.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "src/comm/communicator.hpp"
#include "src/comm/mpi_communicator.hpp"

namespace moesim::cli {

struct World {
  std::optional<MpiSession> session;
  std::unique_ptr<Communicator> host, nccl;
  Communicator& get() { return nccl ? *nccl : *host; }
};

// `device` "cuda" with more than one rank opens NCCL too, one GPU per rank on each node
// (when built with NCCL); anything else stays on the host communicator.
void open_world(World& world, const std::string& device);

}  // namespace moesim::cli
