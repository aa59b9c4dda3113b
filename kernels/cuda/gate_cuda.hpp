// CUDA version of the gate (gate.hpp): the same routing, weights, l_aux and metrics from
// device logits, and the same backward. Pointers are device pointers; the forward returns
// the small per-expert results on the host (it synchronises the stream once), since the
// grouped GEMMs that follow need the expert counts on the host anyway.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/gate.hpp"

namespace moesim::kernels::cuda {

// Device outputs of gate_forward_cuda, laid out as GateResult's vectors.
struct GateDeviceOutputs {
    float* probs = nullptr;           // tokens x experts
    int* expert = nullptr;            // tokens x k
    int* location = nullptr;          // tokens x k, -1 when not routed
    std::uint8_t* kept = nullptr;     // tokens x k
    float* weight = nullptr;          // tokens x k
    int* counts = nullptr;            // experts
    float* ce = nullptr;              // experts (needed by the backward)
};

struct GateHostSummary {
    float aux_loss = 0;
    GateStats stats;
    std::vector<int> counts;  // kept choices per expert
    std::vector<int> demand;  // routed choices per expert
};

// padding may be null (no padding) or point to tokens bytes on the device.
GateHostSummary gate_forward_cuda(const float* logits, int tokens, int experts,
                                  const GateOptions& options, const std::uint8_t* padding,
                                  const GateDeviceOutputs& out, cudaStream_t stream = nullptr);

// dlogits (tokens x experts) from dweight (tokens x k) and daux, given the forward's
// probs, expert, kept and ce.
void gate_backward_cuda(const float* probs, const int* expert, const std::uint8_t* kept,
                        const float* ce, int tokens, int experts, const GateOptions& options,
                        const float* dweight, float daux, float* dlogits,
                        cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
