// Generic collective algorithms over a list of endpoints, as step emitters and as ready-made
// Expansions: ring (reduce-scatter, all-gather, all-reduce), pairwise and direct
// all-to-all(v), binary tree, and two-level hierarchical compositions. They know no
// topology: every route comes from the caller's RouteFn. Cost formulas they reproduce are
// in docs/engine.md; no reduction compute is charged (add delay steps for it).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sim/collective.hpp"
#include "sim/network.hpp"

namespace moesim::sim {

// Per rank, the step after which that rank has finished a phase (kNoStep: nothing to wait
// for). Emitters take one as `after` (empty: start at once) and return the next one, so
// phases chain rank by rank rather than through a global barrier.
using Frontier = std::vector<StepRef>;

// Ring reduce-scatter of an n-byte buffer: p-1 steps; in each, every rank sends n/p bytes
// to the next rank of the ring. Time (p-1)(alpha + n/(p B)) on uncontended links.
Frontier emit_ring_reduce_scatter(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                  std::span<const StepRef> after = {});
// Ring all-gather to an n-byte buffer (n/p from each rank): p-1 steps of n/p bytes.
Frontier emit_ring_all_gather(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after = {});
// Ring all-reduce: reduce-scatter then all-gather, 2(p-1) steps of n/p bytes.
// Time 2(p-1) alpha + 2(p-1)/p n/B on uncontended links.
Frontier emit_ring_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after = {});

// All-to-all(v): sizes[i * p + j] bytes go from rank i to rank j (the diagonal is ignored).
// Pairwise: p-1 steps; in step k rank i sends to rank (i + k) mod p, after its previous
// step and the previous step's receive. Zero-byte pairs only synchronise.
Frontier emit_pairwise_all_to_allv(StepBuilder& b, std::span<const NodeId> ranks, std::span<const Bytes> sizes,
                                   const RouteFn& route, std::span<const StepRef> after = {});
// Direct: every pair's transfer starts at once and they share the links.
Frontier emit_direct_all_to_allv(StepBuilder& b, std::span<const NodeId> ranks, std::span<const Bytes> sizes,
                                 const RouteFn& route, std::span<const StepRef> after = {});
// Uniform versions: each rank sends n/p bytes to every other rank (n: its send buffer).
// Pairwise time (p-1)(alpha + n/(p B)).
Frontier emit_pairwise_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                  std::span<const StepRef> after = {});
Frontier emit_direct_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                                std::span<const StepRef> after = {});

// Binary tree over the ranks in order (rank 0 the root, children of i: 2i+1 and 2i+2),
// whole n-byte messages, not pipelined.
Frontier emit_tree_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                          std::span<const StepRef> after = {});
Frontier emit_tree_broadcast(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                             std::span<const StepRef> after = {});
// Reduce to the root, then broadcast: 2 * depth * (alpha + n/B) on uncontended links.
Frontier emit_tree_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, Bytes n, const RouteFn& route,
                              std::span<const StepRef> after = {});

// Two levels: the ranks form groups of `group_size` consecutive ranks (e.g. the GPUs of a
// node); p must be a multiple of it.
// All-reduce: ring reduce-scatter inside each group, ring all-reduce of n/group_size
// between the ranks with the same index in every group, ring all-gather inside each group.
Frontier emit_hierarchical_all_reduce(StepBuilder& b, std::span<const NodeId> ranks, std::uint32_t group_size, Bytes n,
                                      const RouteFn& route, std::span<const StepRef> after = {});
// All-to-all: pairwise inside each group (n/G to each peer), then pairwise between the
// ranks with the same index in every group (n/N to each peer, N groups).
Frontier emit_hierarchical_all_to_all(StepBuilder& b, std::span<const NodeId> ranks, std::uint32_t group_size, Bytes n,
                                      const RouteFn& route, std::span<const StepRef> after = {});

// Expansions running the emitters above over CollectiveSpec::endpoints and ::bytes.
Expansion ring_reduce_scatter(RouteFn route);
Expansion ring_all_gather(RouteFn route);
Expansion ring_all_reduce(RouteFn route);
Expansion pairwise_all_to_all(RouteFn route);
Expansion direct_all_to_all(RouteFn route);
Expansion tree_all_reduce(RouteFn route);
Expansion tree_broadcast(RouteFn route);
Expansion hierarchical_all_reduce(std::uint32_t group_size, RouteFn route);
Expansion hierarchical_all_to_all(std::uint32_t group_size, RouteFn route);

}  // namespace moesim::sim
