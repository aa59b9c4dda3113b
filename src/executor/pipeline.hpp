// The micro-batches of one update on one pipeline stage, in the plan's schedule (GPipe,
// 1F1B or interleaved 1F1B), with the activations and their gradients passed between
// neighbouring stages.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/plan/plan.hpp"

namespace moesim::exec {

// What a stage does with micro-batch `mb` on its model chunk `chunk` (0 unless
// interleaved): the forward takes the previous virtual stage's output (empty on the
// model's first) and returns its own (empty on the model's last); the backward takes the
// next virtual stage's input gradient (empty on the last) and returns its own input's
// (empty on the first).
struct StageWork {
  std::function<Array<float>(int chunk, int mb, Array<float> input)> forward;
  std::function<Array<float>(int chunk, int mb, Array<float> grad)> backward;
};

// One op of a stage's schedule.
struct PipelineOp {
  bool forward = true;
  int mb = 0;
  int chunk = 0;  // of the stage's model chunks (virtual stages); 0 unless interleaved
  bool operator==(const PipelineOp&) const = default;
};

// The order stage `stage` of `stages` runs `micro_batches` forwards and backwards in:
// GPipe all forwards then all backwards; 1F1B (Megatron's non-interleaved schedule)
// min(stages - stage - 1, m) forwards to fill the pipe, then one forward and one backward
// in turn, then the remaining backwards. Interleaved (Megatron's
// forward_backward_pipelining_with_interleaving, `vpp` chunks per stage, m a multiple of
// stages): each chunk runs every micro-batch, so m * vpp forwards and as many backwards;
// the k-th forward runs chunk (k / stages) % vpp on micro-batch
// (k / (stages * vpp)) * stages + k % stages (micro-batches in groups of `stages`, each
// group through every chunk in turn), the k-th backward the same with the chunks reversed;
// min(2 (stages - stage - 1) + (vpp - 1) stages, m vpp) forwards to fill the pipe, then
// 1F1B, then the remaining backwards.
std::vector<PipelineOp> pipeline_order(Schedule schedule, int stage, int stages, int micro_batches, int vpp = 1);

// A transfer of the interleaved schedule with a neighbouring stage: an activation
// (forward: sent to the next stage, received from the previous) or its gradient
// (backward: sent to the previous, received from the next). Named by the op on this stage
// that produced it (send) or will consume it (receive). The stages form a ring: chunk c
// of stage stages - 1 feeds chunk c + 1 of stage 0.
struct PipelineTransfer {
  bool send = true;
  bool forward = true;
  int chunk = 0, mb = 0;
  bool operator==(const PipelineTransfer&) const = default;
};

// One step of a stage's interleaved schedule: up to one forward and one backward, then
// one exchange of transfers, all started together and completed together.
struct PipelineStep {
  std::vector<PipelineOp> ops;
  std::vector<PipelineTransfer> transfers;
};

// Megatron's interleaved schedule as it communicates (batched p2p, no overlap): a receive
// for chunk 0 first, then after each warm-up forward its output sent with the next
// forward's input received (the last warm-up step also receives the first backward's
// gradient), after each steady forward-backward pair both results sent and what the
// neighbours send in the same step received, after each cool-down backward its gradient
// sent with the next one received. Its ops are pipeline_order's. Every stage's exchanges
// pair up with its neighbours' so that none waits for a transfer its peer has not yet
// started, even where a send completes only when received (NCCL, large MPI messages).
std::vector<PipelineStep> interleaved_steps(int stage, int stages, int vpp, int micro_batches);

// Runs the schedule; `pp` is the pipeline group (rank = stage) and `elements` the size of
// one activation (rows x d). GPipe and 1F1B pair sends and receives as Megatron's do
// (send_forward_recv_backward, send_backward_recv_forward), the interleaved schedule
// exchanges interleaved_steps' transfers (Communicator::exchange), so blocking transports
// never deadlock.
void run_pipeline(Schedule schedule, int micro_batches, Communicator& pp, Backend& backend, std::size_t elements,
                  const StageWork& work, int vpp = 1);

}  // namespace moesim::exec
