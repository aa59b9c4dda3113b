// Analytic (alpha-beta) cost of the collectives of a plan, after NCCL's tuning model:
// time = base latency + steps x per-step latency (by link class) + bus bytes / achieved
// bandwidth. The screening tier of the search uses it; the discrete-event lowering
// agrees with it on closed-form cases. Sizes follow nccl-tests: all-reduce S is the
// buffer, all-gather S the gathered output, reduce-scatter S the input, all-to-all S one
// rank's send buffer.
#pragma once

#include "src/cluster/cluster_spec.hpp"
#include "src/profile/profile.hpp"

namespace moesim {

enum class Collective { all_reduce, all_gather, reduce_scatter, all_to_all, send_recv };

const char* to_string(Collective c);

// How a group of ranks sits on the cluster: `size` ranks over `nodes` nodes, the same
// number on each.
struct GroupPlacement {
  int size = 1;
  int nodes = 1;
  int per_node() const { return size / nodes; }
};

// Achieved per-rank bandwidths (bytes/s) from cluster and profile.
struct LinkRates {
  double intra = 0;  // a GPU's NVLink (or PCIe) egress, times the profile's efficiency
  double inter = 0;  // a GPU's share of its node's NICs, times the profile's efficiency
};

LinkRates link_rates(const ClusterSpec& cluster, const Profile& profile);

struct CollectiveCost {
  double seconds = 0;
  double latency = 0;    // the alpha part
  double bus_bytes = 0;  // bytes each rank moves (nccl-tests busbw x time)
};

// The profiler's alpha-beta fit of `op` on this many ranks and nodes, when the profile has one.
const CollectiveProfile* measured_fit(const Profile& profile, Collective op, const GroupPlacement& group);

CollectiveCost collective_cost(const Profile& profile, const ClusterSpec& cluster, Collective op,
                               const GroupPlacement& group, double bytes);

}  // namespace moesim
