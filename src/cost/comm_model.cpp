// NCCL-style alpha-beta collective costs; see comm_model.hpp.
#include "src/cost/comm_model.hpp"

#include <algorithm>

namespace moesim {

const char* to_string(Collective c) {
  switch (c) {
    case Collective::all_reduce: return "all_reduce";
    case Collective::all_gather: return "all_gather";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::all_to_all: return "all_to_all";
    case Collective::send_recv: return "send_recv";
  }
  return "?";
}

LinkRates link_rates(const ClusterSpec& c, const Profile& p) {
  LinkRates r;
  switch (c.fabric) {
    case IntraFabric::nvswitch:
      r.intra = c.nvlink_bandwidth * p.comm.nvlink_efficiency.value;
      break;
    case IntraFabric::hybrid_cube_mesh: {
      // Rings use every NVLink of a GPU; its egress is the sum of its links.
      int links = 0;
      for (const NvlinkPair& n : c.nvlink_peers)
        if (n.a == 0 || n.b == 0) links += n.links;
      r.intra = links * c.nvlink_bandwidth * p.comm.nvlink_efficiency.value;
      break;
    }
    case IntraFabric::pcie:
      r.intra = c.pcie_bandwidth * p.comm.pcie_efficiency.value;
      break;
  }
  if (c.nics_per_node > 0)
    r.inter = c.nics_per_node * c.nic_bandwidth / c.gpus_per_node * p.comm.net_efficiency.value;
  return r;
}

const CollectiveProfile* measured_fit(const Profile& p, Collective op, const GroupPlacement& g) {
  for (const CollectiveProfile& m : p.comm.collectives)
    if (m.op == to_string(op) && m.ranks == g.size && m.nodes == g.nodes) return &m;
  return nullptr;
}

CollectiveCost collective_cost(const Profile& p, const ClusterSpec& c, Collective op, const GroupPlacement& g,
                               double bytes) {
  CollectiveCost cost;
  const int n = g.size;
  // Nothing to move (a dense model's expert gradients): no collective is launched.
  if (bytes <= 0 || (n <= 1 && op != Collective::send_recv)) return cost;
  // A collective the profiler measured on this many ranks and nodes: its own alpha-beta fit.
  if (const CollectiveProfile* m = measured_fit(p, op, g)) {
    const double frac = static_cast<double>(n - 1) / n;
    cost.latency = m->alpha.value;
    cost.bus_bytes = (op == Collective::all_reduce ? 2 * frac : op == Collective::send_recv ? 1.0 : frac) * bytes;
    cost.seconds = m->alpha.value + bytes / m->bandwidth.value;
    return cost;
  }
  const LinkRates rates = link_rates(c, p);
  const bool multi_node = g.nodes > 1;
  const double intra_lat = c.fabric == IntraFabric::pcie ? p.comm.pcie_step_latency.value : p.comm.nvlink_step_latency.value;
  const double inter_lat = p.comm.net_step_latency.value;
  // A ring over all ranks crosses a node boundary once per node.
  auto ring = [&](double steps, double bus_fraction) {
    const double inter_steps = multi_node ? steps * g.nodes / n : 0.0;
    cost.latency = p.comm.base_latency.value + (steps - inter_steps) * intra_lat + inter_steps * inter_lat;
    const double bw = multi_node ? std::min(rates.intra, rates.inter) : rates.intra;
    cost.bus_bytes = bus_fraction * bytes;
    cost.seconds = cost.latency + cost.bus_bytes / bw;
  };
  const double frac = static_cast<double>(n - 1) / n;
  switch (op) {
    case Collective::all_reduce: ring(2.0 * (n - 1), 2.0 * frac); break;
    case Collective::all_gather:
    case Collective::reduce_scatter: ring(n - 1.0, frac); break;
    case Collective::all_to_all: {
      // Every pair at once: the intra-node share over NVLink and the rest over the NICs
      // proceed side by side; one latency of the slowest class.
      const double intra_bytes = bytes * (g.per_node() - 1) / n;
      const double inter_bytes = bytes * (n - g.per_node()) / n;
      cost.latency = p.comm.base_latency.value + (multi_node ? inter_lat : intra_lat);
      cost.bus_bytes = intra_bytes + inter_bytes;
      cost.seconds = cost.latency + std::max(intra_bytes / rates.intra, multi_node ? inter_bytes / rates.inter : 0.0);
      break;
    }
    case Collective::send_recv: {
      cost.latency = p.comm.base_latency.value + (multi_node ? inter_lat : intra_lat);
      cost.bus_bytes = bytes;
      cost.seconds = cost.latency + bytes / (multi_node ? rates.inter : rates.intra);
      break;
    }
  }
  return cost;
}

}  // namespace moesim
