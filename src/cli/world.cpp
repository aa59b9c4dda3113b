// Opening the ranks of a command; see world.hpp.
#include "src/cli/world.hpp"

#include <cstdlib>
#include <stdexcept>

#include "src/comm/self_communicator.hpp"
#if MOESIM_COMM_NCCL
#include "src/comm/nccl_communicator.hpp"
#endif

namespace moesim::cli {

void open_world(World& w, const std::string& device) {
  if (MpiSession::launched_by_mpirun()) {
    w.session.emplace();
    w.host = std::make_unique<MpiCommunicator>();
  } else {
    w.host = std::make_unique<SelfCommunicator>();
  }
#if MOESIM_COMM_NCCL
  if (device == "cuda" && w.host->size() > 1) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < 1)
      throw std::runtime_error("--device cuda: no GPU is visible to the CUDA runtime");
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    w.nccl = std::make_unique<NcclCommunicator>(*w.host, (local ? std::atoi(local) : w.host->rank()) % devices);
  }
#else
  (void)device;
#endif
}

}  // namespace moesim::cli
