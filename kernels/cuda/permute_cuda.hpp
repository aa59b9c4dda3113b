// CUDA versions of dispatch and combine (permute.hpp): the dispatch built on the device
// from the gate's device outputs, then gathers and scatters with device pointers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/permute.hpp"

namespace moesim::kernels::cuda {

// Device arrays of a Dispatch. source needs dispatch_rows_bound(...) entries.
struct DispatchDevice {
    int* counts = nullptr;   // experts
    int* offsets = nullptr;  // experts + 1
    int* source = nullptr;   // rows
    int* row = nullptr;      // tokens x k
};

// Builds the dispatch from device expert/location/kept (tokens x k); returns the number of
// rows (the stream is synchronised to read it).
int make_dispatch_cuda(const int* expert, const int* location, const std::uint8_t* kept,
                       int tokens, int experts, int k, int capacity, DispatchLayout layout,
                       const DispatchDevice& out, cudaStream_t stream = nullptr);

// y (rows x d) = x gathered by source (zero rows for empty slots).
void permute_cuda(const float* x, int d, const int* source, int rows, float* y,
                  cudaStream_t stream = nullptr);

// dx (tokens x d) = sum of dy over each token's rows.
void permute_backward_cuda(const float* dy, int d, const int* row, int tokens, int k, float* dx,
                           cudaStream_t stream = nullptr);

// out (tokens x d) = sum_j weight * y[row].
void unpermute_cuda(const float* y, int d, const int* row, const float* weight, int tokens, int k,
                    float* out, cudaStream_t stream = nullptr);

// dy (rows x d) = weight * dout[source] (zero for empty slots); dweight (tokens x k) =
// dot(dout[t], y[row]) (zero for dropped choices).
void unpermute_backward_cuda(const float* dout, const float* y, int d, const int* source,
                             const int* row, int rows, const float* weight, int tokens, int k,
                             float* dy, float* dweight, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
