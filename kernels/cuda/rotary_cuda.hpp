// CUDA rotary position embedding (rotary.hpp), forward and backward, in place on device
// pointers. Same layout, convention and double-precision angles as the CPU reference.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/rotary.hpp"

namespace moesim::kernels::cuda {

// As rotary_forward(): x (row stride ld, e.g. the q and k blocks of a fused QKV buffer)
// rotated in place. One thread per (row, pair index) computes its cos and sin once, in
// double, and applies them to every head, so the double-precision cost is rows *
// head_dim / 2 sincos, not one per element (A100 and H100 run FP64 at half the FP32 rate;
// consumer GPUs at 1/64, where this matters more). Invalid shapes throw
// std::invalid_argument.
void rotary_forward_cuda(const RotaryShape& shape, float* x, int ld, cudaStream_t stream = nullptr);

// As rotary_backward(): dx <- R^T dx in place.
void rotary_backward_cuda(const RotaryShape& shape, float* dx, int ld, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
