// What simulate() returns: the start and end of every task and collective step, every
// flow, per-resource and per-link statistics, and the critical path. Plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/collective.hpp"
#include "sim/types.hpp"

namespace moesim::sim {

struct ResourceStats {
  Seconds busy = 0;          // time at least one task was running on it
  double utilisation = 0;    // busy / makespan (0 when the makespan is 0)
  Seconds task_seconds = 0;  // sum of its tasks' durations (> busy when capacity > 1 overlaps them)
  std::uint32_t tasks = 0;   // tasks (and collectives) it ran
};

struct LinkStats {
  Bytes bytes = 0;          // bytes of every flow that crossed it
  Seconds busy = 0;         // time at least one flow was sending over it (latency phases excluded)
  double utilisation = 0;   // bytes / (bandwidth * makespan) (0 when the makespan is 0)
  std::uint32_t flows = 0;  // flows that crossed it
};

// One step of an expanded collective.
struct StepRecord {
  TaskId collective = 0;  // the collective task it belongs to
  StepRef index = 0;      // its index within that collective's expansion
  StepKind kind = StepKind::kDelay;
  Seconds start = 0, end = 0;
  std::uint32_t flow = 0;  // kTransfer: its entry in Result::flows
  std::string label = {};
};

// One transfer: a transfer task, or a transfer step of a collective.
struct FlowRecord {
  TaskId task = 0;         // the transfer task, or the collective that owns the step
  StepRef step = kNoStep;  // kNoStep for a transfer task
  Bytes bytes = 0;
  Seconds start = 0;       // when it started (its latency phase begins)
  Seconds data_start = 0;  // start + the sum of its path's latencies
  Seconds end = 0;
  NodeId src = 0, dst = 0;  // first and last node of its path (equal for an empty path)
  std::uint32_t hops = 0;
};

// How a task on the critical path came to start when it did.
enum class Via : std::uint8_t {
  kStart,       // nothing held it back: it started at time 0
  kDependency,  // the previous step on the path is a dependency that ended at its start
  kResource,    // the previous step on the path released the resource it was queued for
};

struct CriticalStep {
  TaskId task = 0;
  Via via = Via::kStart;
  ResourceId resource = kNoResource;  // kResource: the resource it waited for
  Seconds ready = 0;                  // when its dependencies were all done
  Seconds start = 0, end = 0;         // each step's start is the previous step's end
};

struct CategoryTime {
  std::string category = {};
  Seconds seconds = 0;
  double fraction = 0;  // of the path's length
};

// The chain of tasks that sets the makespan: it starts at time 0 and ends with the task
// that ends last, and every task on it started exactly when the one before it ended
// (through a dependency or by releasing a resource). See docs/engine.md.
struct CriticalPath {
  std::vector<CriticalStep> steps;
  Seconds length = 0;                     // end of the last step (= the makespan)
  std::vector<CategoryTime> by_category;  // time per task category, largest first
  // Waits inside the path's transfer tasks: the latency phase, and the time lost to
  // sharing links with other flows (duration - latency - bytes / narrowest bandwidth).
  Seconds latency = 0;
  Seconds contention = 0;
  // Time path tasks spent ready but queued for their resource (it overlaps the previous
  // step, which held the resource meanwhile).
  Seconds queued = 0;
};

// Counters about the run itself.
struct EngineStats {
  std::uint64_t events = 0;             // events popped from the queue
  std::uint64_t rate_updates = 0;       // max-min recomputations (one per instant with flow changes)
  std::uint64_t flows_rerated = 0;      // flows given a rate by a recomputation, summed
  std::uint64_t sharing_fallbacks = 0;  // recomputations the incremental solver handed to a full one (0 expected)
  std::uint64_t rate_changes = 0;       // flows whose rate actually changed, summed
  std::uint64_t flow_starts = 0;        // flows entering their data phase
  std::size_t engine_bytes = 0;         // peak working memory of the engine, excluding the Result
};

struct Result {
  Seconds makespan = 0;                  // latest end of any task
  std::vector<Seconds> start, end;       // per task id
  std::vector<StepRecord> steps;         // collective steps, by collective then step index
  std::vector<FlowRecord> flows;         // every transfer, in start order
  std::vector<ResourceStats> resources;  // per resource id
  std::vector<LinkStats> links;          // per link id
  CriticalPath critical_path;
  EngineStats stats;

  // Bytes held by this result (allocated capacity).
  std::size_t memory_bytes() const;
};

}  // namespace moesim::sim
