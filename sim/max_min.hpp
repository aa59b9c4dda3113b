// Max-min fair bandwidth sharing, the textbook way (progressive filling): the reference the
// engine's incremental solver is tested against, and a tool for anyone checking a case by
// hand. The engine itself uses flow_sharing.cpp, which gives the same rates.
#pragma once

#include <span>
#include <vector>

#include "sim/types.hpp"

namespace moesim::sim {

// The max-min fair rate of each flow (bytes/s) when flow i crosses the links
// `flow_paths[i]` and link l carries at most `capacities[l]` bytes/s: raise all rates
// together; when a link fills, freeze the flows crossing it; go on with the others.
// A flow with an empty path is unconstrained and gets +infinity. Throws Error for a link
// id out of range or a capacity that is not positive and finite.
std::vector<BytesPerSecond> max_min_rates(std::span<const BytesPerSecond> capacities, std::span<const Path> flow_paths);

}  // namespace moesim::sim
