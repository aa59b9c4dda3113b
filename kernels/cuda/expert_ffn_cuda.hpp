// CUDA expert FFNs (expert_ffn.hpp): grouped GEMMs on cuBLAS plus per-expert bias + GELU
// kernels. Group sizes are host values; everything else is on the device; work runs on
// the cuBLAS handle's stream. Group offsets must be ascending (as Dispatch makes them).
// `precision` is the grouped GEMMs' operands', as in expert_ffn.hpp.
#pragma once

#include <cublas_v2.h>

#include "kernels/expert_ffn.hpp"

namespace moesim::kernels::cuda {

struct ExpertFfnDeviceWeights {
    const float* w1 = nullptr;  // experts x f x d
    const float* b1 = nullptr;  // experts x f
    const float* w2 = nullptr;  // experts x d x f
    const float* b2 = nullptr;  // experts x d
};

struct ExpertFfnDeviceGrads {
    float* w1 = nullptr;
    float* b1 = nullptr;
    float* w2 = nullptr;
    float* b2 = nullptr;
};

void expert_ffn_forward_cuda(cublasHandle_t handle, const ExpertFfnShape& shape, const GroupRows& groups,
                             const float* x, const ExpertFfnDeviceWeights& weights, float* pre, float* act,
                             float* y, GemmPrecision precision = GemmPrecision::fp32);

void expert_ffn_backward_cuda(cublasHandle_t handle, const ExpertFfnShape& shape, const GroupRows& groups,
                              const float* dy, const float* x, const ExpertFfnDeviceWeights& weights,
                              const float* pre, const float* act, float* dx, const ExpertFfnDeviceGrads& grads,
                              bool accumulate = false, GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels::cuda
