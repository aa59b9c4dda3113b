// CUDA SwiGLU (swiglu.hpp), forward and backward, on device pointers. Same column order
// ([gate a | value b]) and formulas as the CPU reference.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/swiglu.hpp"

namespace moesim::kernels::cuda {

// y (rows x f) = silu(a) * b from x (rows x 2f) = [a | b].
void swiglu_forward_cuda(const float* x, int rows, int f, float* y, cudaStream_t stream = nullptr);

// dx (rows x 2f) = [dy * b * silu'(a) | dy * silu(a)]; dx may equal x.
void swiglu_backward_cuda(const float* dy, const float* x, int rows, int f, float* dx,
                          cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
