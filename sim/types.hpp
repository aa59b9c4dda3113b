// Identifiers and units shared by the engine's inputs and outputs. Ids are plain indices
// (dense, in creation order) so results can be stored in flat arrays indexed by them.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace moesim::sim {

// Units: the engine works in SI base units throughout, as doubles.
using Seconds = double;         // simulated time and durations, in seconds
using Bytes = double;           // data volumes, in bytes (a double: volumes are divided by rates)
using BytesPerSecond = double;  // bandwidths, in bytes per second

// Dense indices, in creation order. Plain integers rather than wrapper types: results are
// flat arrays indexed by them and every public function checks the ranges it is given.
using TaskId = std::uint32_t;      // a task of a Workload
using ResourceId = std::uint32_t;  // a resource (queue) of a Workload
using NodeId = std::uint32_t;      // a node (endpoint or switch) of a Network
using LinkId = std::uint32_t;      // a directional link of a Network

inline constexpr ResourceId kNoResource = std::numeric_limits<ResourceId>::max();

// A route: the links a transfer crosses, in order (each link starts where the previous ends).
using Path = std::vector<LinkId>;

}  // namespace moesim::sim
