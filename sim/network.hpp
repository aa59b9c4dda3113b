// The network a workload's transfers run over: named nodes joined by directional links,
// each with a bandwidth and a latency. Knows nothing of GPUs or topologies; a cluster model
// (in src/) builds one and supplies the routes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sim/types.hpp"

namespace moesim::sim {

// A directional link from `src` to `dst`. Flows crossing it share `bandwidth` max-min
// fairly; each flow is charged `latency` once (see docs/engine.md, "Latency").
struct Link {
  NodeId src = 0;
  NodeId dst = 0;
  BytesPerSecond bandwidth = 0;  // bytes per second, > 0
  Seconds latency = 0;           // seconds, >= 0
};

class Network {
 public:
  NodeId add_node(std::string name);
  // Adds a directional link; throws Error for an unknown node, a bandwidth that is not
  // positive and finite, or a latency that is negative or not finite.
  LinkId add_link(NodeId src, NodeId dst, BytesPerSecond bandwidth, Seconds latency);
  // Adds one link each way with the same bandwidth and latency; returns the src->dst one.
  LinkId add_duplex_link(NodeId a, NodeId b, BytesPerSecond bandwidth, Seconds latency);

  std::size_t node_count() const { return node_names_.size(); }
  std::size_t link_count() const { return links_.size(); }
  const Link& link(LinkId id) const;
  const std::string& node_name(NodeId id) const;
  // "a->b" for messages and traces.
  std::string link_name(LinkId id) const;

  // The first link added from src to dst; throws Error naming both nodes when there is none.
  LinkId link_between(NodeId src, NodeId dst) const;
  // The links joining consecutive nodes of `hops` (at least one node); throws Error when
  // two consecutive nodes have no link between them.
  Path path_through(std::span<const NodeId> hops) const;
  // A route with the fewest links (breadth-first; among equal routes the one reached
  // through lower link ids). Throws Error when dst cannot be reached from src.
  Path shortest_path(NodeId src, NodeId dst) const;

  // Whether every link id exists and each link starts where the previous one ends.
  bool valid_path(std::span<const LinkId> path) const;
  // Throws Error unless valid_path(path); `what` names the owner in the message (e.g.
  // "task 'send0'").
  void check_path(std::span<const LinkId> path, std::string_view what) const;

 private:
  void check_node(NodeId id, std::string_view what) const;

  std::vector<std::string> node_names_;
  std::vector<Link> links_;
  std::unordered_map<std::uint64_t, LinkId> first_link_;  // (src << 32 | dst) -> first link
  std::vector<std::vector<LinkId>> out_links_;            // per node, in id order
};

// Looks up the route between two endpoints; supplied by whoever knows the topology.
using RouteFn = std::function<Path(NodeId src, NodeId dst)>;

// Routes over the network's fewest-hop paths (Network::shortest_path). The network must
// outlive the returned function.
RouteFn shortest_path_routes(const Network& network);

}  // namespace moesim::sim
