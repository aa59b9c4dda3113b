// CUDA Adam step (adam.hpp) over a flat device buffer of n parameters.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/adam.hpp"

namespace moesim::kernels::cuda {

void adam_step_cuda(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, std::size_t n,
                    int step, const AdamOptions& options, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
