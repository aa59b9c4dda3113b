// One rank's replica of the GPT-MoE model: its parameters and gradients in the backend's
// memory, and the forward and backward of one micro-batch through every layer (embedding,
// pre-norm attention blocks, dense or MoE FFNs, final norm, output head, cross-entropy).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/gate.hpp"
#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/parameters.hpp"
#include "src/model/model_spec.hpp"

namespace moesim::exec {

struct Replica {
  Replica(Backend& backend, const ModelSpec& model, const ExpertShard& shard, int ep_rank);

  Backend& backend;
  const ModelSpec& model;
  ExpertShard shard;
  ModelParams layout;
  Array<float> dense, expert;            // parameters
  Array<float> dense_grad, expert_grad;  // their gradients, accumulated over micro-batches
  Array<float> zeros;                    // stands in for biases and norm shifts a model lacks
  Array<float> sink;                     // receives their gradients
};

// What one micro-batch reports. Per-layer vectors have one entry per MoE layer.
struct MicroBatchResult {
  double loss_sum = 0;  // nats, over the micro-batch's tokens
  int tokens = 0;
  double aux_loss_sum = 0;  // sum over MoE layers of l_aux
  std::vector<kernels::GateStats> gate_stats;
  // Tokens whose first (expert1) and second (expert2, k = 2) choice is each expert, by
  // expert id, before dropping: the routing trace's counts.
  std::vector<std::vector<int>> expert1, expert2;
};

struct MicroBatchInput {
  const std::int32_t* tokens = nullptr;   // host, mbs x seq
  const std::int32_t* targets = nullptr;  // host, mbs x seq
  int mbs = 0;
  std::uint64_t gate_seed = 0;  // the gate's random draws for this micro-batch
  float loss_scale = 0;         // d(loss)/d(loss_sum): 1 / tokens of the global batch
  float aux_scale = 0;          // d(loss)/d(l_aux) of each gate call
};

// Runs the forward and the backward of one micro-batch, adding to the replica's gradients.
// `ep_comm` is the expert-parallel group.
MicroBatchResult train_micro_batch(Replica& replica, Communicator& ep_comm, const MicroBatchInput& in);

// The gate options of an MoE layer for `tokens` tokens on a rank (capacity from
// src/accounting/capacity.hpp, as the simulator sizes it).
kernels::GateOptions gate_options(const ModelSpec& model, int tokens, std::uint64_t seed);

}  // namespace moesim::exec
