// CUDA fused bias + GELU (activation.hpp), forward and backward, on device pointers.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/activation.hpp"

namespace moesim::kernels::cuda {

// y = gelu(x + bias); bias may be null; y may equal x.
void bias_gelu_cuda(const float* x, const float* bias, int rows, int cols, Gelu kind, float* y,
                    cudaStream_t stream = nullptr);

// dx = dy * gelu'(x + bias); dbias (may be null) = column sums of dx. dx may equal dy.
void bias_gelu_backward_cuda(const float* dy, const float* x, const float* bias, int rows, int cols,
                             Gelu kind, float* dx, float* dbias, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
