// The plan's collectives as engine flows over the cluster network, so that collectives
// running at the same time share links. One call emits one collective run by several
// groups at once (e.g. the data-parallel all-reduce of every tensor-parallel rank of a
// stage): first the cost model's latency (alpha), then, for every group:
//  - all-reduce, all-gather, reduce-scatter: a pipelined ring, as NCCL runs it: each rank
//    streams its bus bytes (comm_model.hpp's bus_bytes) to the next rank of the ring, all
//    at once;
//  - all-to-all: every rank sends bytes/p to every other rank, all at once (direct);
//  - send/receive: groups are (sender, receiver) pairs, one flow each.
// Flows run at the links' achieved bandwidths (cluster_network.hpp), which is what the cost
// model assumes on NVSwitch and PCIe fabrics and with a NIC per GPU: there the two tiers
// agree exactly on an uncontended collective, and the flows add the sharing of links with
// other traffic, and of NICs that several GPUs use. Two cases are scaled (their bytes) so
// that one group alone takes comm_model.hpp's time: a collective the profile has a measured
// fit for, and a group inside one node of a hybrid cube-mesh, where NCCL runs several
// rings over different NVLinks and the cost model counts all of a GPU's links.
#pragma once

#include <string>
#include <vector>

#include "sim/collective.hpp"
#include "src/cost/comm_model.hpp"
#include "src/simulate/cluster_network.hpp"

namespace moesim {

struct CollectiveFlows {
  Collective op = Collective::all_reduce;
  std::vector<std::vector<int>> groups;  // global GPU ranks; every group runs the collective
  double bytes = 0;  // per group, as comm_model.hpp sizes it (send/receive: the message)
};

// `c` turned into flows once (routes, sizes, the latency), to be emitted many times.
struct PreparedFlows {
  struct Flow {
    double bytes = 0;
    const sim::Path* path = nullptr;  // owned by the ClusterNetwork
    std::string label;
  };
  double latency = 0;  // the slowest group's
  std::vector<Flow> flows;
};
PreparedFlows prepare_collective_flows(const ClusterNetwork& net, const ClusterSpec& cluster, const Profile& profile,
                                       const CollectiveFlows& c);

// Emits the prepared collective after step `after` (sim::kNoStep: at the collective's
// start) with `share` of its bytes and latency (a bucket of a bucketed reduction); returns
// the step ending it.
sim::StepRef emit_collective_flows(sim::StepBuilder& b, const PreparedFlows& c, double share = 1.0,
                                   sim::StepRef after = sim::kNoStep);
// Both at once, for a collective emitted once.
sim::StepRef emit_collective_flows(sim::StepBuilder& b, const ClusterNetwork& net, const ClusterSpec& cluster,
                                   const Profile& profile, const CollectiveFlows& c, double share = 1.0,
                                   sim::StepRef after = sim::kNoStep);

// The placement comm_model.hpp prices a group by: its size and the nodes it spans.
GroupPlacement placement_of(const std::vector<int>& group, const ClusterNetwork& net);

}  // namespace moesim
