// The generic collective algorithms: each emits transfers with per-rank dependencies (a
// rank's next send waits for its previous send and for the data it must forward), and
// returns per-rank frontiers so algorithms compose into hierarchical ones.
#include "sim/collectives.hpp"

#include <sstream>
#include <string>
#include <utility>

#include "sim/error.hpp"

namespace moesim::sim {
namespace {

void check_after(std::span<const StepRef> after, std::size_t p, const char* what) {
  if (!after.empty() && after.size() != p) {
    std::ostringstream msg;
    msg << what << ": `after` has " << after.size() << " entries; expected none or one per rank (" << p << ")";
    throw Error(msg.str());
  }
}

StepRef entry(std::span<const StepRef> after, std::size_t i) { return after.empty() ? kNoStep : after[i]; }

Frontier pass_through(std::span<const StepRef> after, std::size_t p) {
  return after.empty() ? Frontier(p, kNoStep) : Frontier(after.begin(), after.end());
}

// One step standing for all of `deps`: none, the only one, or a zero-time join.
StepRef join(StepBuilder& b, const std::vector<StepRef>& deps) {
  StepRef only = kNoStep;
  std::size_t count = 0;
  for (const StepRef d : deps) {
    if (d == kNoStep || d == only) continue;
    only = d;
    ++count;
  }
  if (count <= 1) return only;
  return b.delay(0, deps, "join");
}

std::string label(const char* what, std::size_t step, std::size_t from, std::size_t to) {
  return std::string(what) + " " + std::to_string(step) + ": " + std::to_string(from) + "->" + std::to_string(to);
}

// `steps` rounds of a ring: in each, rank i sends `chunk` bytes to rank i+1, after its own
// previous send and the chunk it received from rank i-1 in the previous round.
Frontier ring(StepBuilder& b, std::span<const NodeId> ranks, Bytes chunk, std::size_t steps, const RouteFn& route,
              std::span<const StepRef> after, const char* what) {
  const std::size_t p = ranks.size();
  check_after(after, p, what);
  if (p <= 1 || steps == 0) return pass_through(after, p);
  std::vector<Path> routes(p);
  for (std::size_t i = 0; i < p; ++i) routes[i] = route(ranks[i], ranks[(i + 1) % p]);
  std::vector<StepRef> prev(p, kNoStep), cur(p, kNoStep);
  for (std::size_t s = 0; s < steps; ++s) {
    for (std::size_t i = 0; i < p; ++i) {
      const std::size_t left = (i + p - 1) % p;
      const std::size_t right = (i + 1) % p;
      const StepRef deps[2] = {s == 0 ? entry(after, i) : prev[i], s == 0 ? entry(after, right) : prev[left]};
      cur[i] = b.transfer(chunk, routes[i], deps, label(what, s, i, right));
    }
    std::swap(prev, cur);
  }
  Frontier out(p);
  for (std::size_t i = 0; i < p; ++i) out[i] = join(b, {prev[i], prev[(i + p - 1) % p]});
  return out;
}

void check_sizes(std::span<const Bytes> sizes, std::size_t p, const char* what) {
  if (sizes.size() != p * p) {
    std::ostringstream msg;
    msg << what << ": " << sizes.size() << " sizes given; expected p * p = " << p * p;
    throw Error(msg.str());
  }
}

std::vector<Bytes> uniform(std::size_t p, Bytes n) {
  return std::vector<Bytes>(p * p, p > 0 ? n / static_cast<double>(p) : 0.0);
}

template <class Emit>
Frontier per_group(std::span<const NodeId> ranks, std::uint32_t group_size, bool across, Frontier frontier,
                   Emit&& emit) {
  // across = false: groups of consecutive ranks; true: the ranks with the same index in
  // every group.
  const std::size_t p = ranks.size();
  const std::size_t groups = p / group_size;
  const std::size_t count = across ? group_size : groups;
  const std::size_t members = across ? groups : group_size;
  for (std::size_t g = 0; g < count; ++g) {
    std::vector<NodeId> sub(members);
    std::vector<StepRef> sub_after(members);
    std::vector<std::size_t> at(members);
    for (std::size_t m = 0; m < members; ++m) {
      at[m] = across ? m * group_size + g : g * group_size + m;
      sub[m] = ranks[at[m]];
      sub_after[m] = frontier[at[m]];
    }
    const Frontier out = emit(std::span<const NodeId>(sub), std::span<const StepRef>(sub_after));
    for (std::size_t m = 0; m < members; ++m) frontier[at[m]] = out[m];
  }
  return frontier;
}

void check_groups(std::size_t p, std::uint32_t group_size, const char* what) {
  if (group_size == 0 || p % group_size != 0) {
    std::ostringstream msg;
    msg << what << ": " << p << " ranks do not split into groups of " << group_size;
    throw Error(msg.str());
  }
}

}  // namespace

Frontier emit_ring_reduce_scatter(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                  std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  return ring(b, ranks, p > 0 ? n / static_cast<double>(p) : 0.0, p > 0 ? p - 1 : 0, route, after, "ring-rs");
}

Frontier emit_ring_all_gather(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  return ring(b, ranks, p > 0 ? n / static_cast<double>(p) : 0.0, p > 0 ? p - 1 : 0, route, after, "ring-ag");
}

Frontier emit_ring_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  return ring(b, ranks, p > 0 ? n / static_cast<double>(p) : 0.0, p > 0 ? 2 * (p - 1) : 0, route, after, "ring-ar");
}

Frontier emit_pairwise_all_to_allv(StepBuilder& b, std::span<const NodeId> ranks, std::span<const Bytes> sizes,
                                   const RouteFn& route, std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "pairwise all-to-all");
  check_sizes(sizes, p, "pairwise all-to-all");
  if (p <= 1) return pass_through(after, p);
  std::vector<StepRef> prev(p, kNoStep), cur(p, kNoStep);
  for (std::size_t k = 1; k < p; ++k) {
    for (std::size_t i = 0; i < p; ++i) {
      const std::size_t to = (i + k) % p;
      const std::size_t sent_to_me_last = (i + p - (k - 1)) % p;  // sender to i in step k-1
      const StepRef deps[3] = {k == 1 ? entry(after, i) : prev[i], k == 1 ? kNoStep : prev[sent_to_me_last],
                               entry(after, to)};
      const Bytes bytes = sizes[i * p + to];
      const std::string name = label("a2a", k, i, to);
      cur[i] = bytes > 0 ? b.transfer(bytes, route(ranks[i], ranks[to]), deps, name) : b.delay(0, deps, name);
    }
    std::swap(prev, cur);
  }
  Frontier out(p);
  for (std::size_t i = 0; i < p; ++i) out[i] = join(b, {prev[i], prev[(i + 1) % p]});  // last send, last receive
  return out;
}

Frontier emit_direct_all_to_allv(StepBuilder& b, std::span<const NodeId> ranks, std::span<const Bytes> sizes,
                                 const RouteFn& route, std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "direct all-to-all");
  check_sizes(sizes, p, "direct all-to-all");
  if (p <= 1) return pass_through(after, p);
  std::vector<std::vector<StepRef>> involved(p);  // per rank: its sends and receives
  for (std::size_t i = 0; i < p; ++i) {
    involved[i].push_back(entry(after, i));
    for (std::size_t j = 0; j < p; ++j) {
      if (j == i || sizes[i * p + j] <= 0) continue;
      const StepRef deps[2] = {entry(after, i), entry(after, j)};
      const StepRef s = b.transfer(sizes[i * p + j], route(ranks[i], ranks[j]), deps, label("a2a", 0, i, j));
      involved[i].push_back(s);
      involved[j].push_back(s);
    }
  }
  Frontier out(p);
  for (std::size_t i = 0; i < p; ++i) out[i] = join(b, involved[i]);
  return out;
}

Frontier emit_pairwise_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                  std::span<const StepRef> after) {
  const std::vector<Bytes> sizes = uniform(ranks.size(), n);
  return emit_pairwise_all_to_allv(b, ranks, sizes, route, after);
}

Frontier emit_direct_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                std::span<const StepRef> after) {
  const std::vector<Bytes> sizes = uniform(ranks.size(), n);
  return emit_direct_all_to_allv(b, ranks, sizes, route, after);
}

Frontier emit_tree_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                          std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "tree reduce");
  if (p <= 1) return pass_through(after, p);
  std::vector<StepRef> up(p, kNoStep);       // rank i's send to its parent
  for (std::size_t i = p - 1; i > 0; --i) {  // children have higher indices than parents
    const std::size_t parent = (i - 1) / 2;
    const StepRef deps[4] = {entry(after, i), entry(after, parent), 2 * i + 1 < p ? up[2 * i + 1] : kNoStep,
                             2 * i + 2 < p ? up[2 * i + 2] : kNoStep};
    up[i] = b.transfer(n, route(ranks[i], ranks[parent]), deps, label("tree-up", 0, i, parent));
  }
  Frontier out(p);
  out[0] = join(b, {entry(after, 0), up[1], p > 2 ? up[2] : kNoStep});
  for (std::size_t i = 1; i < p; ++i) out[i] = up[i];
  return out;
}

Frontier emit_tree_broadcast(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                             std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "tree broadcast");
  if (p <= 1) return pass_through(after, p);
  std::vector<StepRef> down(p, kNoStep);  // rank i's receive from its parent
  for (std::size_t i = 1; i < p; ++i) {   // parents before children
    const std::size_t parent = (i - 1) / 2;
    const StepRef deps[3] = {parent == 0 ? entry(after, 0) : down[parent], entry(after, parent), entry(after, i)};
    down[i] = b.transfer(n, route(ranks[parent], ranks[i]), deps, label("tree-down", 0, parent, i));
  }
  Frontier out(p);
  for (std::size_t i = 0; i < p; ++i) {
    out[i] = join(b, {i == 0 ? entry(after, 0) : down[i], 2 * i + 1 < p ? down[2 * i + 1] : kNoStep,
                      2 * i + 2 < p ? down[2 * i + 2] : kNoStep});
  }
  return out;
}

Frontier emit_tree_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after) {
  const Frontier reduced = emit_tree_reduce(b, ranks, n, route, after);
  return emit_tree_broadcast(b, ranks, n, route, reduced);
}

Frontier emit_hierarchical_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, std::uint32_t group_size, Bytes n,
                                      const RouteFn& route, std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "hierarchical all-reduce");
  check_groups(p, group_size, "hierarchical all-reduce");
  Frontier f = pass_through(after, p);
  f = per_group(ranks, group_size, false, std::move(f), [&](std::span<const NodeId> g, std::span<const StepRef> a) {
    return emit_ring_reduce_scatter(b, g, n, route, a);
  });
  f = per_group(ranks, group_size, true, std::move(f), [&](std::span<const NodeId> g, std::span<const StepRef> a) {
    return emit_ring_all_reduce(b, g, n / group_size, route, a);
  });
  return per_group(ranks, group_size, false, std::move(f), [&](std::span<const NodeId> g, std::span<const StepRef> a) {
    return emit_ring_all_gather(b, g, n, route, a);
  });
}

Frontier emit_hierarchical_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, std::uint32_t group_size, Bytes n,
                                      const RouteFn& route, std::span<const StepRef> after) {
  const std::size_t p = ranks.size();
  check_after(after, p, "hierarchical all-to-all");
  check_groups(p, group_size, "hierarchical all-to-all");
  Frontier f = pass_through(after, p);
  f = per_group(ranks, group_size, false, std::move(f), [&](std::span<const NodeId> g, std::span<const StepRef> a) {
    return emit_pairwise_all_to_all(b, g, n, route, a);
  });
  return per_group(ranks, group_size, true, std::move(f), [&](std::span<const NodeId> g, std::span<const StepRef> a) {
    return emit_pairwise_all_to_all(b, g, n, route, a);
  });
}

namespace {

// An Expansion that runs one emitter over the collective's endpoints and bytes.
using Emitter = Frontier (*)(StepBuilder&, std::span<const NodeId>, Bytes, const RouteFn&, std::span<const StepRef>);
Expansion bind(Emitter emit, RouteFn route) {
  return [emit, route = std::move(route)](const CollectiveContext& c, StepBuilder& b) {
    emit(b, c.endpoints, c.bytes, route, {});
  };
}

}  // namespace

Expansion ring_reduce_scatter(RouteFn route) { return bind(emit_ring_reduce_scatter, std::move(route)); }
Expansion ring_all_gather(RouteFn route) { return bind(emit_ring_all_gather, std::move(route)); }
Expansion ring_all_reduce(RouteFn route) { return bind(emit_ring_all_reduce, std::move(route)); }
Expansion pairwise_all_to_all(RouteFn route) { return bind(emit_pairwise_all_to_all, std::move(route)); }
Expansion direct_all_to_all(RouteFn route) { return bind(emit_direct_all_to_all, std::move(route)); }
Expansion tree_all_reduce(RouteFn route) { return bind(emit_tree_all_reduce, std::move(route)); }
Expansion tree_broadcast(RouteFn route) { return bind(emit_tree_broadcast, std::move(route)); }

Expansion hierarchical_all_reduce(std::uint32_t group_size, RouteFn route) {
  return [group_size, route = std::move(route)](const CollectiveContext& c, StepBuilder& b) {
    emit_hierarchical_all_reduce(b, c.endpoints, group_size, c.bytes, route);
  };
}

Expansion hierarchical_all_to_all(std::uint32_t group_size, RouteFn route) {
  return [group_size, route = std::move(route)](const CollectiveContext& c, StepBuilder& b) {
    emit_hierarchical_all_to_all(b, c.endpoints, group_size, c.bytes, route);
  };
}

}  // namespace moesim::sim
