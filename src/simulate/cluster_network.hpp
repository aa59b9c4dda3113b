// The cluster as the engine's network: one engine link per direction of every link of the
// cluster graph (cluster/topology.hpp), at its bandwidth times the profile's achieved
// efficiency for its class, and routes between GPUs as engine paths. Latency is left to
// the collectives (collective_flows.hpp charges the cost model's alpha), so links carry none.
#pragma once

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "sim/network.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/cluster/topology.hpp"
#include "src/profile/profile.hpp"

namespace moesim {

class ClusterNetwork {
 public:
  ClusterNetwork(const ClusterSpec& cluster, const Profile& profile);

  const sim::Network& network() const { return network_; }
  int gpus() const { return static_cast<int>(topo_.gpu_vertex.size()); }
  int node_of(int gpu) const { return gpu / gpus_per_node_; }
  // The links from one GPU to another (empty for the same GPU), topology.hpp's route.
  // Nodes are alike, so a route is found once per (local source, local destination, same
  // node or not) and moved to the nodes asked for; later calls are lookups.
  const sim::Path& route(int src_gpu, int dst_gpu) const;

 private:
  Topology topo_;
  sim::Network network_;
  int gpus_per_node_ = 1;
  // Vertices by (kind, node, index), to move a route between nodes.
  std::map<std::tuple<int, int, int>, TopoVertexId> vertex_;
  mutable std::map<std::tuple<int, int, bool>, std::vector<TopoVertexId>> shapes_;  // canonical vertex sequences
  mutable std::map<std::pair<int, int>, sim::Path> routes_;
};

}  // namespace moesim
