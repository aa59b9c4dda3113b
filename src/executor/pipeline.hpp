// The micro-batches of one update on one pipeline stage, in the plan's schedule (GPipe or
// 1F1B), with the activations and their gradients passed between neighbouring stages.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/plan/plan.hpp"

namespace moesim::exec {

// What a stage does with micro-batch `mb`: the forward takes the previous stage's output
// (empty on the first stage) and returns its own (empty on the last); the backward takes
// the next stage's input gradient (empty on the last stage) and returns its own input's
// (empty on the first).
struct StageWork {
  std::function<Array<float>(int mb, Array<float> input)> forward;
  std::function<Array<float>(int mb, Array<float> grad)> backward;
};

// One op of a stage's schedule.
struct PipelineOp {
  bool forward = true;
  int mb = 0;
  bool operator==(const PipelineOp&) const = default;
};

// The order stage `stage` of `stages` runs `micro_batches` forwards and backwards in:
// GPipe all forwards then all backwards; 1F1B (Megatron's non-interleaved schedule)
// min(stages - stage - 1, m) forwards to fill the pipe, then one forward and one backward
// in turn, then the remaining backwards.
std::vector<PipelineOp> pipeline_order(Schedule schedule, int stage, int stages, int micro_batches);

// Runs the schedule; `pp` is the pipeline group (rank = stage) and `elements` the size of
// one activation (rows x d). Sends and receives pair up as Megatron's do
// (send_forward_recv_backward, send_backward_recv_forward), so blocking transports never
// deadlock.
void run_pipeline(Schedule schedule, int micro_batches, Communicator& pp, Backend& backend, std::size_t elements,
                  const StageWork& work);

}  // namespace moesim::exec
