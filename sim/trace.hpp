// Chrome trace event JSON for a simulated run, readable by Perfetto and chrome://tracing:
// a process per resource group with a thread per resource, tasks as complete ("X")
// events carrying their names, categories and arguments, and flows (transfers and
// collective steps) on tracks of their own so overlapping flows never break nesting.
#pragma once

#include <filesystem>
#include <iosfwd>

#include "sim/network.hpp"
#include "sim/result.hpp"
#include "sim/workload.hpp"

namespace moesim::sim {

struct TraceOptions {
  bool flows = true;  // one event per transfer (tasks and collective steps) on flow tracks
  bool steps = true;  // collective delay steps that take time, on their own tracks
};

// Writes the trace to `out`. Times are microseconds with three decimals (nanoseconds).
void write_chrome_trace(std::ostream& out, const Workload& workload, const Network& network, const Result& result,
                        const TraceOptions& options = {});

// Writes the trace to a temporary file beside `path`, then renames it over `path`, so a
// failed write never leaves a partial file. Throws Error naming the file on failure.
void write_chrome_trace(const std::filesystem::path& path, const Workload& workload, const Network& network,
                        const Result& result, const TraceOptions& options = {});

}  // namespace moesim::sim
