// CUDA softmax cross-entropy (cross_entropy.hpp), forward and backward, on device pointers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cross_entropy.hpp"

namespace moesim::kernels::cuda {

// Writes lse (rows) and returns the summed loss and counted rows (synchronises the
// stream). A target outside [0, classes) other than ignore_index throws std::out_of_range.
CrossEntropyResult cross_entropy_cuda(const float* logits, const std::int32_t* targets, int rows,
                                      int classes, std::int32_t ignore_index, float* lse,
                                      cudaStream_t stream = nullptr);

void cross_entropy_backward_cuda(const float* logits, const std::int32_t* targets, const float* lse,
                                 int rows, int classes, std::int32_t ignore_index, float grad_scale,
                                 float* dlogits, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
