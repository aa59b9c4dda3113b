// CUDA LayerNorm and RMSNorm (norm.hpp), forward and backward, on device pointers.
// Statistics are accumulated in fp32 (the CPU reference uses double).
#pragma once

#include <cuda_runtime_api.h>

namespace moesim::kernels::cuda {

void layer_norm_cuda(const float* x, const float* gamma, const float* beta, int rows, int cols,
                     float eps, float* y, float* mean, float* rstd, cudaStream_t stream = nullptr);

// dgamma and dbeta may be null.
void layer_norm_backward_cuda(const float* dy, const float* x, const float* gamma, const float* mean,
                              const float* rstd, int rows, int cols, float* dx, float* dgamma,
                              float* dbeta, cudaStream_t stream = nullptr);

void rms_norm_cuda(const float* x, const float* gamma, int rows, int cols, float eps, float* y,
                   float* rstd, cudaStream_t stream = nullptr);

// dgamma may be null.
void rms_norm_backward_cuda(const float* dy, const float* x, const float* gamma, const float* rstd,
                            int rows, int cols, float* dx, float* dgamma, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
