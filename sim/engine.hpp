// The discrete-event engine's entry point: simulate() runs a Workload over a Network and
// returns a Result. It owns the clock and the event queue for the length of the call and
// keeps no state between calls, so simulations of different plans can run side by side.
#pragma once

#include <cstdint>

#include "sim/network.hpp"
#include "sim/result.hpp"
#include "sim/workload.hpp"

namespace moesim::sim {

// How flow rates are re-solved when a flow starts or ends.
enum class Sharing : std::uint8_t {
  kIncremental,  // only the flows the change can reach (default; same rates as kFull)
  kFull,         // every sending flow, every time: slow, kept as a reference for tests
};

struct Options {
  bool critical_path = true;  // compute Result::critical_path
  Sharing sharing = Sharing::kIncremental;
};

// Runs the workload to completion. Throws Error for input the engine cannot run: a path
// over a link that does not exist or is not contiguous, a collective endpoint that does
// not exist, a cycle among dependencies (and in-order queues), or a deadlock among
// collectives; the message names the tasks involved. Never hangs: every event is handled
// once, and a run that stops with tasks left over is diagnosed and reported.
Result simulate(const Workload& workload, const Network& network, const Options& options = {});

}  // namespace moesim::sim
