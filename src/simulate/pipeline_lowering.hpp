// The event tier's lowering of one training iteration onto the engine (sim/): each
// pipeline stage's representative rank as a compute stream and a communication stream;
// forward and backward of every micro-batch in the schedule's order (GPipe, 1F1B); the
// activations and gradients between stages; the data-parallel gradient reduction in
// buckets that start as the last backward produces them; FSDP weight gathers prefetched
// on the communication stream; the optimizer step. Data- and expert-parallel replicas
// behave alike and are lowered once. Durations come in already priced (stage_cost.hpp).
#pragma once

#include <vector>

#include "sim/result.hpp"
#include "sim/workload.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

// Seconds of one stage's work for one micro-batch, and per iteration.
struct StageWork {
  double forward = 0;   // compute and in-line (tensor/expert-parallel) communication
  double backward = 0;  // the same, with recomputation
  double send_forward = 0;   // activations to the next stage
  double send_backward = 0;  // gradients to the previous stage
  double grad_reduce = 0;    // data-parallel gradient reduction (and post-step gathers)
  int buckets = 1;           // the reduction's buckets over the last backward
  double fsdp_gather = 0;    // ZeRO-3: weights gathered before each forward and each backward
  double optimizer = 0;
};

// The order a stage runs its passes in: (forward?, micro-batch).
struct Pass {
  bool forward = true;
  int micro_batch = 0;
};
std::vector<Pass> stage_order(Schedule schedule, int stage, int stages, int micro_batches);

struct LoweredIteration {
  sim::Workload workload;
  std::vector<sim::ResourceId> compute, comm;  // per stage
};

// `with_dp_comm` false leaves out the gradient reduction and the FSDP gathers (to tell
// what they add from the pipeline's own idle time).
LoweredIteration lower_iteration(const std::vector<StageWork>& stages, Schedule schedule, int micro_batches,
                                 bool with_dp_comm = true);

}  // namespace moesim
