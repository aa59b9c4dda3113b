// One rank's replica of the GPT-MoE model: its parameters and gradients in the backend's
// memory, and the forward and backward of one micro-batch through every layer (embedding,
// pre-norm attention blocks, dense or MoE FFNs, final norm, output head, cross-entropy).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/gate.hpp"
#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/param_store.hpp"
#include "src/executor/parameters.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim::exec {

// The plan's ZeRO stage and the groups it shards over: dense parameters over data
// parallel, experts over their expert-data-parallel replicas (null: held whole).
struct ZeroSharding {
  int stage = 0;
  Communicator* dense = nullptr;
  Communicator* expert = nullptr;
};

struct Replica {
  // Buffers are padded to a multiple of the shard counts (each unit's under ZeRO 2/3), so
  // a sharded optimizer splits them into equal chunks; padding holds zeros.
  // `vpp`: the stage's model chunks (interleaved schedule), all held in the one layout.
  Replica(Backend& backend, const ModelSpec& model, const ExpertShard& shard, int ep_rank, int tp = 1,
          int tp_rank = 0, int pp = 1, int stage = 0, const ZeroSharding& zero = {}, int vpp = 1,
          EndStages ends = {});

  Backend& backend;
  const ModelSpec& model;
  ExpertShard shard;
  int tp = 1, tp_rank = 0;  // tensor-parallel group size and this rank in it
  ModelParams layout;
  // Parameters and their gradients (accumulated over micro-batches), as ZeRO holds them.
  ParamStore dense, expert;
  Array<float> zeros;                    // stands in for biases and norm shifts a model lacks
  Array<float> sink;                     // receives their gradients
};

// What one micro-batch reports. Per-layer vectors have one entry per MoE layer.
struct MicroBatchResult {
  double loss_sum = 0;  // nats, over the micro-batch's tokens
  int tokens = 0;
  double aux_loss_sum = 0;  // sum over MoE layers of l_aux
  double active_experts_sum = 0;  // sum over MoE layers of the mean experts a token is routed to
  std::vector<kernels::GateStats> gate_stats;
  std::vector<int> moe_index;  // of each entry's layer, among the model's MoE layers
  // Tokens whose first (expert1) and second (expert2, k = 2) choice is each expert, by
  // expert id, before dropping: the routing trace's counts.
  std::vector<std::vector<int>> expert1, expert2;
};

struct MicroBatchInput {
  const std::int32_t* tokens = nullptr;   // host, mbs x seq
  const std::int32_t* targets = nullptr;  // host, mbs x seq
  int mbs = 0;
  std::uint64_t gate_seed = 0;  // the gate's random draws for this micro-batch
  std::int64_t step = 0;        // the update (0-based), for moe.dense_to_sparse's schedule
  float loss_scale = 0;         // d(loss)/d(loss_sum): 1 / tokens of the global batch
  float aux_scale = 0;          // d(loss)/d(l_aux) of each gate call
  Recompute recompute = Recompute::none;
  int chunk = 0;  // the stage's model chunk to run (interleaved schedule), else 0
  // The update's last backward on this stage (of this chunk): under ZeRO 0 each unit's gradient is final
  // when its backward ends, and its all-reduce starts then (ParamStore::start_reduce).
  bool reduce_in_backward = false;
};

// The groups a stage's layers talk over: expert parallel (the all-to-alls) and tensor
// parallel (the partial sums).
struct StageComms {
  Communicator& ep;
  Communicator& tp;
};

// What a micro-batch's backward on this stage reads from its forward.
struct LayerActs;
struct MicroBatchState {
  MicroBatchState();
  ~MicroBatchState();
  MicroBatchState(MicroBatchState&&) noexcept;
  MicroBatchState& operator=(MicroBatchState&&) noexcept;
  Array<std::int32_t> tokens, targets;
  std::vector<LayerActs> acts;
  Array<float> x_out, hf, meanf, rstdf, logits, lse;  // last stage
};

// The forward of this pipeline stage's layers (of model chunk in.chunk) for one
// micro-batch. The first stage's first chunk embeds in.tokens; the others continue from
// `input` (rows x d from the previous virtual stage). The last stage's last chunk computes
// the loss (into `result`) and returns nothing; the others return the activations to send on.
Array<float> stage_forward(Replica& replica, const StageComms& comms, const MicroBatchInput& in, Array<float> input,
                           MicroBatchState& state, MicroBatchResult& result);
// The backward of chunk in.chunk, adding to the replica's gradients: the last stage's last
// chunk starts from the loss, the others from `grad` (the next virtual stage's input
// gradient). Returns the gradient of the chunk's input for the previous virtual stage
// (nothing on the first stage's first chunk).
Array<float> stage_backward(Replica& replica, const StageComms& comms, const MicroBatchInput& in, Array<float> grad,
                            MicroBatchState& state);
// Both, for a model on one stage.
MicroBatchResult train_micro_batch(Replica& replica, const StageComms& comms, const MicroBatchInput& in);

// The gate options of an MoE layer for `tokens` tokens on a rank (capacity from
// src/accounting/capacity.hpp, as the simulator sizes it) at update `step` (0-based):
// with moe.dense_to_sparse, EvoMoE's dense-to-sparse gate while the schedule is dense or
// annealing (src/routing/dense_to_sparse.hpp's phase and temperature), dropless then: the
// capacity factor applies from the sparse phase on, to the model's top-k gate.
kernels::GateOptions gate_options(const ModelSpec& model, int tokens, std::uint64_t seed, std::int64_t step = 0);

}  // namespace moesim::exec
