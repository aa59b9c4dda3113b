// Building the engine's network from the cluster graph; see cluster_network.hpp.
#include "src/simulate/cluster_network.hpp"

namespace moesim {
namespace {

double efficiency(LinkKind kind, const CommProfile& comm) {
  switch (kind) {
    case LinkKind::nvlink: return comm.nvlink_efficiency.value;
    case LinkKind::pcie: return comm.pcie_efficiency.value;
    case LinkKind::net: return comm.net_efficiency.value;
  }
  return 1.0;
}

}  // namespace

ClusterNetwork::ClusterNetwork(const ClusterSpec& cluster, const Profile& profile)
    : topo_(build_topology(cluster)), gpus_per_node_(cluster.gpus_per_node) {
  const TopologyGraph& g = topo_.graph;
  for (TopoVertexId v = 0; v < boost::num_vertices(g); ++v) {
    network_.add_node(g[v].name);
    vertex_[{static_cast<int>(g[v].kind), g[v].node, g[v].index}] = v;
  }
  // Vertex ids are engine node ids; one engine link per directed edge.
  for (auto [e, end] = boost::edges(g); e != end; ++e)
    network_.add_link(static_cast<sim::NodeId>(boost::source(*e, g)), static_cast<sim::NodeId>(boost::target(*e, g)),
                      g[*e].bandwidth * efficiency(g[*e].kind, profile.comm), 0.0);
}

const sim::Path& ClusterNetwork::route(int src, int dst) const {
  auto [it, fresh] = routes_.try_emplace({src, dst});
  if (!fresh || src == dst) return it->second;
  const int a = src % gpus_per_node_, b = dst % gpus_per_node_;
  const bool same = node_of(src) == node_of(dst);
  auto [shape, found] = shapes_.try_emplace({a, b, same});
  if (found) {
    // The route from local GPU a of node 0 to local GPU b of node 0 or 1.
    const int canonical_dst = b + (same ? 0 : gpus_per_node_);
    shape->second.push_back(topo_.gpu_vertex[static_cast<std::size_t>(a)]);
    for (const TopoEdgeId e : moesim::route(topo_, a, canonical_dst)) shape->second.push_back(boost::target(e, topo_.graph));
  }
  // Node 0 becomes the source's node, node 1 the destination's; the network vertex is shared.
  std::vector<sim::NodeId> hops;
  for (const TopoVertexId v : shape->second) {
    const TopoVertex& tv = topo_.graph[v];
    const int node = tv.node < 0 ? tv.node : (tv.node == 0 ? node_of(src) : node_of(dst));
    hops.push_back(static_cast<sim::NodeId>(vertex_.at({static_cast<int>(tv.kind), node, tv.index})));
  }
  it->second = network_.path_through(hops);
  return it->second;
}

}  // namespace moesim
