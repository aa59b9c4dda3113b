// The cluster as a Boost.Graph graph of devices, switches and directional links, and
// routes between GPUs over it. The lowering turns routes into engine flows.
#pragma once

#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "src/cluster/cluster_spec.hpp"

namespace moesim {

enum class VertexKind { gpu, nvswitch, pcie_host, nic, network };
enum class LinkKind { nvlink, pcie, net };

struct TopoVertex {
  VertexKind kind = VertexKind::gpu;
  int node = 0;
  int index = 0;  // local GPU or NIC index inside the node
  std::string name;
};

struct TopoLink {
  LinkKind kind = LinkKind::nvlink;
  double bandwidth = 0;  // bytes/s, this direction
  double latency = 0;    // seconds
};

using TopologyGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, TopoVertex, TopoLink>;
using TopoVertexId = TopologyGraph::vertex_descriptor;
using TopoEdgeId = TopologyGraph::edge_descriptor;

struct Topology {
  TopologyGraph graph;
  std::vector<TopoVertexId> gpu_vertex;  // by global GPU rank (node * gpus_per_node + local)
};

// Builds the graph: NVSwitch fabrics as a switch vertex per node with one link pair per
// GPU; the DGX-1 cube-mesh as direct GPU-GPU links (bandwidth = links x per-link);
// every GPU also on its node's PCIe host; NICs (GPU g uses NIC g*nics/gpus) joined by
// one non-blocking network vertex.
Topology build_topology(const ClusterSpec& cluster);

// The route from one GPU to another: the links in order. Chosen by least cost with cost
// per hop = latency + 1 MiB / bandwidth, so wide links win and ties go to fewer hops.
std::vector<TopoEdgeId> route(const Topology& topo, int src_gpu, int dst_gpu);

}  // namespace moesim
