// CUDA token + position embedding (embedding.hpp), forward and backward, on device pointers.
// Both are deterministic and match the CPU reference bit for bit (the same fp32 additions
// in the same order).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moesim::kernels::cuda {

// y[r] = wte[tokens[r]] + wpe[r % seq]; wpe may be null (no position embedding). Layout and
// positions as embedding_forward(). The tokens are on the device and are not checked on the
// host (that would synchronise the stream): a row whose token lies outside [0, vocab) gets
// quiet NaNs, so the loss turns NaN instead of the kernel reading out of bounds. Invalid
// sizes throw std::invalid_argument.
void embedding_forward_cuda(const std::int32_t* tokens, const float* wte, const float* wpe, int rows, int seq,
                            int vocab, int dim, float* y, cudaStream_t stream = nullptr);

// dwte[tokens[r]] += dy[r], dwpe[r % seq] += dy[r] (dwpe may be null to skip), accumulating
// into the caller's buffers. Deterministic without atomics: the rows are stably sorted by
// token (cub::DeviceRadixSort), then each (token, column) sums its rows in row order, and
// each (position, column) its rows in batch order, exactly as the CPU loop adds them.
// Rows with a token outside [0, vocab) are skipped. Allocates about 4 * rows ints of
// stream-ordered scratch plus the sort's temporary storage.
void embedding_backward_cuda(const float* dy, const std::int32_t* tokens, int rows, int seq, int vocab, int dim,
                             float* dwte, float* dwpe, cudaStream_t stream = nullptr);

}  // namespace moesim::kernels::cuda
