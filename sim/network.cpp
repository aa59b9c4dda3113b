// Network: nodes, directional links, and the checks that turn bad ids or values into
// clear errors before any simulation starts.
#include "sim/network.hpp"

#include <cmath>
#include <deque>
#include <limits>
#include <sstream>

#include "sim/error.hpp"

namespace moesim::sim {
namespace {

std::uint64_t pair_key(NodeId src, NodeId dst) { return (static_cast<std::uint64_t>(src) << 32) | dst; }

}  // namespace

NodeId Network::add_node(std::string name) {
  if (node_names_.size() >= std::numeric_limits<NodeId>::max()) {
    throw Error("network: too many nodes");
  }
  node_names_.push_back(std::move(name));
  out_links_.emplace_back();
  return static_cast<NodeId>(node_names_.size() - 1);
}

void Network::check_node(NodeId id, std::string_view what) const {
  if (id >= node_names_.size()) {
    std::ostringstream msg;
    msg << what << ": node " << id << " does not exist (the network has " << node_names_.size() << " nodes)";
    throw Error(msg.str());
  }
}

LinkId Network::add_link(NodeId src, NodeId dst, BytesPerSecond bandwidth, Seconds latency) {
  check_node(src, "add_link source");
  check_node(dst, "add_link destination");
  if (!(bandwidth > 0) || !std::isfinite(bandwidth)) {
    std::ostringstream msg;
    msg << "link " << node_names_[src] << "->" << node_names_[dst]
        << ": bandwidth must be positive and finite (bytes/s), got " << bandwidth;
    throw Error(msg.str());
  }
  if (!(latency >= 0) || !std::isfinite(latency)) {
    std::ostringstream msg;
    msg << "link " << node_names_[src] << "->" << node_names_[dst]
        << ": latency must be non-negative and finite (s), got " << latency;
    throw Error(msg.str());
  }
  if (links_.size() >= std::numeric_limits<LinkId>::max()) throw Error("network: too many links");
  const auto id = static_cast<LinkId>(links_.size());
  links_.push_back(Link{src, dst, bandwidth, latency});
  first_link_.emplace(pair_key(src, dst), id);  // keeps the first one on duplicates
  out_links_[src].push_back(id);
  return id;
}

LinkId Network::add_duplex_link(NodeId a, NodeId b, BytesPerSecond bandwidth, Seconds latency) {
  const LinkId forward = add_link(a, b, bandwidth, latency);
  add_link(b, a, bandwidth, latency);
  return forward;
}

const Link& Network::link(LinkId id) const {
  if (id >= links_.size()) {
    std::ostringstream msg;
    msg << "link " << id << " does not exist (the network has " << links_.size() << " links)";
    throw Error(msg.str());
  }
  return links_[id];
}

const std::string& Network::node_name(NodeId id) const {
  check_node(id, "node_name");
  return node_names_[id];
}

std::string Network::link_name(LinkId id) const {
  const Link& l = link(id);
  return node_names_[l.src] + "->" + node_names_[l.dst];
}

LinkId Network::link_between(NodeId src, NodeId dst) const {
  check_node(src, "link_between source");
  check_node(dst, "link_between destination");
  const auto it = first_link_.find(pair_key(src, dst));
  if (it == first_link_.end()) {
    throw Error("no link from node '" + node_names_[src] + "' to node '" + node_names_[dst] + "'");
  }
  return it->second;
}

Path Network::path_through(std::span<const NodeId> hops) const {
  if (hops.empty()) throw Error("path_through: a path needs at least one node");
  Path path;
  path.reserve(hops.size() - 1);
  check_node(hops[0], "path_through");
  for (std::size_t i = 1; i < hops.size(); ++i) path.push_back(link_between(hops[i - 1], hops[i]));
  return path;
}

Path Network::shortest_path(NodeId src, NodeId dst) const {
  check_node(src, "shortest_path source");
  check_node(dst, "shortest_path destination");
  if (src == dst) return {};
  constexpr LinkId kUnseen = std::numeric_limits<LinkId>::max();
  std::vector<LinkId> via(node_names_.size(), kUnseen);  // link that first reached each node
  std::vector<bool> seen(node_names_.size(), false);
  std::deque<NodeId> frontier{src};
  seen[src] = true;
  while (!frontier.empty() && !seen[dst]) {
    const NodeId at = frontier.front();
    frontier.pop_front();
    for (const LinkId l : out_links_[at]) {
      const NodeId next = links_[l].dst;
      if (seen[next]) continue;
      seen[next] = true;
      via[next] = l;
      frontier.push_back(next);
    }
  }
  if (!seen[dst]) {
    throw Error("no route from node '" + node_names_[src] + "' to node '" + node_names_[dst] + "'");
  }
  Path path;
  for (NodeId at = dst; at != src; at = links_[via[at]].src) path.push_back(via[at]);
  return Path(path.rbegin(), path.rend());
}

bool Network::valid_path(std::span<const LinkId> path) const {
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] >= links_.size()) return false;
    if (i > 0 && links_[path[i - 1]].dst != links_[path[i]].src) return false;
  }
  return true;
}

void Network::check_path(std::span<const LinkId> path, std::string_view what) const {
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] >= links_.size()) {
      std::ostringstream msg;
      msg << what << ": link " << path[i] << " (hop " << i << " of its path) does not exist (the network has "
          << links_.size() << " links)";
      throw Error(msg.str());
    }
    if (i > 0 && links_[path[i - 1]].dst != links_[path[i]].src) {
      std::ostringstream msg;
      msg << what << ": path is not contiguous at hop " << i << ": link " << link_name(path[i - 1]) << " ends at '"
          << node_names_[links_[path[i - 1]].dst] << "' but link " << link_name(path[i]) << " starts at '"
          << node_names_[links_[path[i]].src] << "'";
      throw Error(msg.str());
    }
  }
}

RouteFn shortest_path_routes(const Network& network) {
  return [&network](NodeId src, NodeId dst) { return network.shortest_path(src, dst); };
}

}  // namespace moesim::sim
