// Lowering collectives onto the cluster network; see collective_flows.hpp.
#include "src/simulate/collective_flows.hpp"

#include <algorithm>
#include <set>

#include "sim/max_min.hpp"

namespace moesim {
namespace {

std::vector<sim::BytesPerSecond> capacity(const ClusterNetwork& net) {
  std::vector<sim::BytesPerSecond> out(net.network().link_count());
  for (sim::LinkId l = 0; l < out.size(); ++l) out[l] = net.network().link(l).bandwidth;
  return out;
}

}  // namespace

GroupPlacement placement_of(const std::vector<int>& group, const ClusterNetwork& net) {
  std::set<int> nodes;
  for (const int g : group) nodes.insert(net.node_of(g));
  return {static_cast<int>(group.size()), static_cast<int>(nodes.size())};
}

PreparedFlows prepare_collective_flows(const ClusterNetwork& net, const ClusterSpec& cluster, const Profile& profile,
                                       const CollectiveFlows& c) {
  struct Flow {
    int src, dst;
    double bytes;
    std::size_t group;
  };
  std::vector<Flow> flows;
  std::vector<CollectiveCost> costs;
  double latency = 0;
  for (std::size_t gi = 0; gi < c.groups.size(); ++gi) {
    const std::vector<int>& g = c.groups[gi];
    const int p = static_cast<int>(g.size());
    const CollectiveCost cost = collective_cost(profile, cluster, c.op, placement_of(g, net), c.bytes);
    costs.push_back(cost);
    latency = std::max(latency, cost.latency);
    if (cost.seconds <= cost.latency) continue;
    switch (c.op) {
      case Collective::send_recv: flows.push_back({g.front(), g.back(), c.bytes, gi}); break;
      case Collective::all_to_all:
        for (int i = 0; i < p; ++i)
          for (int j = 0; j < p; ++j)
            if (i != j) flows.push_back({g[i], g[j], c.bytes / p, gi});
        break;
      default:
        for (int i = 0; i < p; ++i) flows.push_back({g[i], g[(i + 1) % p], cost.bus_bytes, gi});
    }
  }
  PreparedFlows out;
  out.latency = latency;
  if (flows.empty()) return out;
  // Scaled groups: the flows' time with the group alone on the network, against the model's.
  std::vector<sim::Path> paths;
  for (const Flow& f : flows) paths.push_back(net.route(f.src, f.dst));
  std::vector<double> scale(c.groups.size(), 1.0);
  for (std::size_t gi = 0; gi < c.groups.size(); ++gi) {
    const GroupPlacement where = placement_of(c.groups[gi], net);
    const bool cube_mesh = cluster.fabric == IntraFabric::hybrid_cube_mesh && where.nodes == 1;
    if (!cube_mesh && !measured_fit(profile, c.op, where)) continue;
    std::vector<sim::Path> alone;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < flows.size(); ++i)
      if (flows[i].group == gi) {
        alone.push_back(paths[i]);
        index.push_back(i);
      }
    const std::vector<sim::BytesPerSecond> rates = sim::max_min_rates(capacity(net), alone);
    double slowest = 0;
    for (std::size_t k = 0; k < index.size(); ++k)
      if (!alone[k].empty()) slowest = std::max(slowest, flows[index[k]].bytes / rates[k]);
    if (slowest > 0) scale[gi] = (costs[gi].seconds - costs[gi].latency) / slowest;
  }
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const Flow& f = flows[i];
    out.flows.push_back({f.bytes * scale[f.group], &net.route(f.src, f.dst), std::to_string(f.src) + "->" + std::to_string(f.dst)});
  }
  return out;
}

sim::StepRef emit_collective_flows(sim::StepBuilder& b, const PreparedFlows& c, double share, sim::StepRef after) {
  const sim::StepRef start = b.delay(c.latency * share, {after}, "latency");
  if (c.flows.empty()) return start;
  std::vector<sim::StepRef> ends;
  ends.reserve(c.flows.size());
  for (const PreparedFlows::Flow& f : c.flows) ends.push_back(b.transfer(f.bytes * share, *f.path, {start}, f.label));
  return b.delay(0, ends, "done");
}

sim::StepRef emit_collective_flows(sim::StepBuilder& b, const ClusterNetwork& net, const ClusterSpec& cluster,
                                   const Profile& profile, const CollectiveFlows& c, double share, sim::StepRef after) {
  return emit_collective_flows(b, prepare_collective_flows(net, cluster, profile, c), share, after);
}

}  // namespace moesim
