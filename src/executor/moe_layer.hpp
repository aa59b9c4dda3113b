// The MoE FFN of one layer on one rank, forward and backward: gate, dispatch into expert
// order, the all-to-all-v to the experts' owners in the expert-parallel group (after
// exchanging row counts), the expert FFNs as grouped GEMMs, and the way back.
#pragma once

#include <cstddef>
#include <vector>

#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/rank_grid.hpp"

namespace moesim::exec {

struct MoeLayerShape {
  int tokens = 0;     // this rank's tokens in the micro-batch
  int d = 0;          // model dim
  int f = 0;          // expert FFN dim
  int experts = 0;    // global experts (slots)
  int local_experts = 0;
  std::vector<int> slot_of_expert;  // ExpertShard::slot_of_expert(); empty: identity
  // The router's GEMM operands (the gate's linear, forward and backward): the backend's
  // precision where the model's moe.gate_precision is bf16, else fp32.
  kernels::GemmPrecision router = kernels::GemmPrecision::fp32;
};

struct MoeLayerWeights {
  const float* gate_w = nullptr;  // experts x d
  Backend::ExpertWeights experts{};
};

// What the backward needs from the forward.
struct MoeSaved {
  Routing routing;
  DispatchMap map;
  Array<float> x_perm;  // this rank's token rows in slot order (rows x d)
  Array<float> x_e;     // rows this rank's experts compute, expert-major (R x d)
  Array<float> pre, act;
  Array<float> y_perm;  // expert outputs back in this rank's slot order (rows x d)
  // Expert parallel only: rows sent to / received from each peer, and for each
  // expert-major row its index in the received (peer-major) buffer.
  std::vector<std::size_t> send_rows, recv_rows;
  Array<int> regroup;
  std::vector<int> expert_offsets, expert_counts;  // local experts, over the R rows
};

// out (tokens x d) = the MoE FFN of h (tokens x d). `comm` is the expert-parallel group.
void moe_forward(Backend& backend, Communicator& comm, const MoeLayerShape& shape,
                 const kernels::GateOptions& gate, const MoeLayerWeights& w, const float* h,
                 float* out, MoeSaved& saved);

// dh (tokens x d, overwritten) from dout; gradients of the gate (dgate_w) and the experts
// are added to. daux is d(loss)/d(l_aux) of this call. `tp` is the tensor-parallel group
// over which each expert's FFN is split (the forward's caller sums its output over it).
void moe_backward(Backend& backend, Communicator& comm, Communicator& tp, const MoeLayerShape& shape,
                  const kernels::GateOptions& gate, const MoeLayerWeights& w, const float* h,
                  const float* dout, float daux, MoeSaved& saved, float* dh, float* dgate_w,
                  Backend::ExpertGrads dexperts);

}  // namespace moesim::exec
