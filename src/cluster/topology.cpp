// Builds the cluster graph from a ClusterSpec and finds routes with Dijkstra.
#include "src/cluster/topology.hpp"

#include <boost/graph/dijkstra_shortest_paths.hpp>
#include <boost/property_map/function_property_map.hpp>

#include <cassert>

namespace moesim {
namespace {

TopoVertexId add_vertex(Topology& t, VertexKind kind, int node, int index, std::string name) {
  return boost::add_vertex(TopoVertex{kind, node, index, std::move(name)}, t.graph);
}

void add_duplex(Topology& t, TopoVertexId a, TopoVertexId b, LinkKind kind, double bw, double lat) {
  boost::add_edge(a, b, TopoLink{kind, bw, lat}, t.graph);
  boost::add_edge(b, a, TopoLink{kind, bw, lat}, t.graph);
}

}  // namespace

Topology build_topology(const ClusterSpec& c) {
  Topology t;
  const int g = c.gpus_per_node;
  TopoVertexId network = 0;
  if (c.nics_per_node > 0) network = add_vertex(t, VertexKind::network, -1, 0, "network");
  for (int node = 0; node < c.nodes; ++node) {
    std::string n = "node" + std::to_string(node);
    TopoVertexId host = add_vertex(t, VertexKind::pcie_host, node, 0, n + ".pcie");
    TopoVertexId sw = 0;
    if (c.fabric == IntraFabric::nvswitch) sw = add_vertex(t, VertexKind::nvswitch, node, 0, n + ".nvswitch");
    std::vector<TopoVertexId> gpus;
    for (int i = 0; i < g; ++i) {
      TopoVertexId v = add_vertex(t, VertexKind::gpu, node, i, n + ".gpu" + std::to_string(i));
      gpus.push_back(v);
      t.gpu_vertex.push_back(v);
      add_duplex(t, v, host, LinkKind::pcie, c.pcie_bandwidth, c.pcie_latency);
      if (c.fabric == IntraFabric::nvswitch) add_duplex(t, v, sw, LinkKind::nvlink, c.nvlink_bandwidth, c.nvlink_latency);
    }
    if (c.fabric == IntraFabric::hybrid_cube_mesh)
      for (const NvlinkPair& p : c.nvlink_peers)
        add_duplex(t, gpus[p.a], gpus[p.b], LinkKind::nvlink, p.links * c.nvlink_bandwidth, c.nvlink_latency);
    for (int k = 0; k < c.nics_per_node; ++k) {
      TopoVertexId nic = add_vertex(t, VertexKind::nic, node, k, n + ".nic" + std::to_string(k));
      add_duplex(t, nic, network, LinkKind::net, c.nic_bandwidth, c.nic_latency);
      for (int i = 0; i < g; ++i)
        if (static_cast<long>(i) * c.nics_per_node / g == k) add_duplex(t, gpus[i], nic, LinkKind::pcie, c.pcie_bandwidth, c.pcie_latency);
    }
  }
  return t;
}

std::vector<TopoEdgeId> route(const Topology& topo, int src_gpu, int dst_gpu) {
  assert(src_gpu >= 0 && src_gpu < static_cast<int>(topo.gpu_vertex.size()));
  assert(dst_gpu >= 0 && dst_gpu < static_cast<int>(topo.gpu_vertex.size()));
  const TopologyGraph& g = topo.graph;
  if (src_gpu == dst_gpu) return {};
  constexpr double reference_bytes = 1048576.0;  // ranks links for a 1 MiB message
  auto n = boost::num_vertices(g);
  std::vector<double> dist(n);
  std::vector<TopoVertexId> pred(n);
  auto weight = boost::make_function_property_map<TopoEdgeId, double>(
      [&g](TopoEdgeId e) { return g[e].latency + reference_bytes / g[e].bandwidth; });
  // Point-to-point traffic is not relayed by a third GPU (switches, hosts, NICs and the
  // network relay it), so edges leaving any GPU but the source cost "infinity".
  TopoVertexId src = topo.gpu_vertex[src_gpu], dst = topo.gpu_vertex[dst_gpu];
  auto filtered_weight = boost::make_function_property_map<TopoEdgeId, double>([&](TopoEdgeId e) {
    TopoVertexId from = boost::source(e, g);
    if (g[from].kind == VertexKind::gpu && from != src) return 1e30;
    return weight[e];
  });
  boost::dijkstra_shortest_paths(
      g, src,
      boost::predecessor_map(boost::make_iterator_property_map(pred.begin(), boost::get(boost::vertex_index, g)))
          .distance_map(boost::make_iterator_property_map(dist.begin(), boost::get(boost::vertex_index, g)))
          .weight_map(filtered_weight));
  std::vector<TopoEdgeId> path;
  for (TopoVertexId v = dst; v != src; v = pred[v]) {
    TopoVertexId u = pred[v];
    assert(u != v && "unreachable GPU in a connected topology");
    auto [e, ok] = boost::edge(u, v, g);
    assert(ok);
    path.push_back(e);
  }
  return {path.rbegin(), path.rend()};
}

}  // namespace moesim
