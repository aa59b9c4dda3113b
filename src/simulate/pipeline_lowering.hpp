// The event tier's lowering of one training iteration onto the engine (sim/): each
// pipeline stage's representative rank as a compute stream and a communication stream;
// forward and backward of every micro-batch in the schedule's order (GPipe, 1F1B); the
// activations and gradients between stages; the data-parallel gradient reduction in
// buckets that start as the last backward produces them; FSDP weight gathers prefetched
// on the communication stream; the optimizer step. Data- and expert-parallel replicas
// behave alike and are lowered once. Durations come in already priced (stage_cost.hpp);
// the communication can instead come as emitters of flows over a network, which then run
// as collectives (collective_flows.hpp) sharing its links.
#pragma once

#include <functional>
#include <vector>

#include "sim/collective.hpp"
#include "sim/result.hpp"
#include "sim/workload.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

// Emits `share` of a communication's steps (a bucket's, a chunk's); returns its last step.
using CommFlows = std::function<sim::StepRef(sim::StepBuilder&, double share)>;

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
  // When set, the communication above runs as flows over the lowering's network instead
  // of as a delay of its seconds (the seconds still say whether it happens at all).
  CommFlows grad_reduce_flows, fsdp_gather_flows;
  CommFlows send_forward_flows;   // to stage (s + 1) mod pp
  CommFlows send_backward_flows;  // to stage (s - 1) mod pp
};

// The order a stage runs its passes in: (forward?, model chunk, micro-batch). Chunks
// exist under the interleaved schedule: stage s holds chunks c = 0..vpp-1, virtual stage
// c * pp + s of the model.
struct Pass {
  bool forward = true;
  int micro_batch = 0;
  int chunk = 0;
};
// Interleaved 1F1B follows Megatron: 2 (pp - stage - 1) + (vpp - 1) pp warm-up forwards,
// chunks taken pp micro-batches at a time; it needs micro_batches % stages == 0.
std::vector<Pass> stage_order(Schedule schedule, int stage, int stages, int micro_batches, int vpp = 1);

struct LoweredIteration {
  sim::Workload workload;
  std::vector<sim::ResourceId> compute, comm;  // per stage
  int vpp = 1;
  // [virtual stage][micro-batch]: the forward pass, and the first and last task of the
  // backward. Virtual stage c * pp + s is chunk c of stage s.
  std::vector<std::vector<sim::TaskId>> forward, backward_first, backward_last;
};

// Micro-batches whose activations each stage holds at its peak: the most forwards started
// and not yet ended backward at any instant of the timeline (a backward's end frees before
// a forward starting at the same instant allocates); a chunk's pass counts 1/vpp.
std::vector<double> peak_in_flight(const LoweredIteration& lowered, const sim::Result& result);

// `with_dp_comm` false leaves out the gradient reduction and the FSDP gathers (to tell
// what they add from the pipeline's own idle time).
// `vpp` chunks per stage (interleaved): each chunk's pass takes 1/vpp of the stage's.
LoweredIteration lower_iteration(const std::vector<StageWork>& stages, Schedule schedule, int micro_batches,
                                 bool with_dp_comm = true, int vpp = 1);

}  // namespace moesim
