// CUDA token + position embedding. The forward is elementwise. The backward avoids atomics
// so that it is deterministic: a stable radix sort of (token, row) pairs groups each
// token's rows in row order, and one thread per (token, column) adds them up in that order.
#include "kernels/cuda/embedding_cuda.hpp"

#include <math_constants.h>

#include <cstddef>
#include <cub/device/device_radix_sort.cuh>
#include <string>

#include "kernels/check.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::check_launch;
using detail::grid_for;

constexpr int kThreads = 256;

__global__ void embedding_forward_kernel(const std::int32_t* tokens, const float* wte, const float* wpe,
                                         std::size_t n, int seq, int vocab, int dim, float* y)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const std::size_t r = i / dim, c = i % dim;
        const std::int32_t t = tokens[r];
        if (t < 0 || t >= vocab) {
            y[i] = CUDART_NAN_F;
            continue;
        }
        const float e = wte[static_cast<std::size_t>(t) * dim + c];
        // Without wpe, a copy (not e + 0, which would turn -0 into +0), as the CPU does.
        y[i] = wpe ? e + wpe[(r % seq) * dim + c] : e;
    }
}

__global__ void iota_kernel(int* out, int n)
{
    for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
         i += static_cast<int>(gridDim.x * blockDim.x)) {
        out[i] = i;
    }
}

// Thread (i, c) of the sorted order: if position i starts a run of equal tokens, adds
// column c of the run's rows to dwte in row order (the sort is stable).
__global__ void token_grad_kernel(const float* dy, const std::int32_t* sorted_tokens, const int* sorted_rows,
                                  int rows, int vocab, int dim, float* dwte)
{
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    for (std::size_t idx = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; idx < n;
         idx += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const int i = static_cast<int>(idx / dim);
        const int c = static_cast<int>(idx % dim);
        const std::int32_t t = sorted_tokens[i];
        if ((i > 0 && sorted_tokens[i - 1] == t) || t < 0 || t >= vocab) {
            continue;
        }
        float* out = dwte + static_cast<std::size_t>(t) * dim + c;
        float acc = *out;
        for (int j = i; j < rows && sorted_tokens[j] == t; ++j) {
            acc += dy[static_cast<std::size_t>(sorted_rows[j]) * dim + c];
        }
        *out = acc;
    }
}

// Thread (p, c): dwpe[p][c] += dy[b * seq + p][c] for b = 0, 1, ... in order.
__global__ void position_grad_kernel(const float* dy, int batch, int seq, int dim, float* dwpe)
{
    const std::size_t n = static_cast<std::size_t>(seq) * dim;
    const std::size_t seq_stride = n;
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        float acc = dwpe[i];
        for (int b = 0; b < batch; ++b) {
            acc += dy[b * seq_stride + i];
        }
        dwpe[i] = acc;
    }
}

// Blocks for n elementwise items, capped: the kernels loop over the rest.
unsigned elementwise_grid(std::size_t n)
{
    const unsigned blocks = grid_for(n, kThreads);
    return blocks < 65535u ? blocks : 65535u;
}

void check_sizes(int rows, int seq, int vocab, int dim, const char* fn)
{
    kernels::detail::require(rows >= 0 && seq >= 1 && vocab >= 1 && dim >= 1, fn,
                             "needs rows >= 0 and seq, vocab, dim >= 1");
    kernels::detail::require(rows % seq == 0, fn,
                             "rows (" + std::to_string(rows) + ") must be a multiple of seq (" +
                                 std::to_string(seq) + ")");
}

}  // namespace

void embedding_forward_cuda(const std::int32_t* tokens, const float* wte, const float* wpe, int rows, int seq,
                            int vocab, int dim, float* y, cudaStream_t stream)
{
    check_sizes(rows, seq, vocab, dim, "embedding_forward_cuda");
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    if (n == 0) {
        return;
    }
    embedding_forward_kernel<<<elementwise_grid(n), kThreads, 0, stream>>>(tokens, wte, wpe, n, seq, vocab, dim,
                                                                            y);
    check_launch("embedding_forward_kernel");
}

void embedding_backward_cuda(const float* dy, const std::int32_t* tokens, int rows, int seq, int vocab, int dim,
                             float* dwte, float* dwpe, cudaStream_t stream)
{
    check_sizes(rows, seq, vocab, dim, "embedding_backward_cuda");
    if (rows == 0) {
        return;
    }
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    if (dwpe) {
        const std::size_t positions = static_cast<std::size_t>(seq) * dim;
        position_grad_kernel<<<elementwise_grid(positions), kThreads, 0, stream>>>(dy, rows / seq, seq, dim, dwpe);
        check_launch("position_grad_kernel");
    }
    // Scratch: rows ints each for the row ids, sorted tokens and sorted row ids, then the
    // sort's temporary storage (256-byte aligned, as cudaMalloc's own).
    std::size_t sort_bytes = 0;
    check(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, tokens, static_cast<std::int32_t*>(nullptr),
                                          static_cast<const int*>(nullptr), static_cast<int*>(nullptr), rows, 0,
                                          32, stream),
          "cub::DeviceRadixSort::SortPairs (size query)");
    const std::size_t ints_bytes = (3 * static_cast<std::size_t>(rows) * sizeof(int) + 255) / 256 * 256;
    void* scratch = nullptr;
    check(cudaMallocAsync(&scratch, ints_bytes + sort_bytes, stream), "cudaMallocAsync");
    int* row_ids = static_cast<int*>(scratch);
    std::int32_t* sorted_tokens = row_ids + rows;
    int* sorted_rows = sorted_tokens + rows;
    void* sort_temp = static_cast<char*>(scratch) + ints_bytes;
    iota_kernel<<<elementwise_grid(static_cast<std::size_t>(rows)), kThreads, 0, stream>>>(row_ids, rows);
    cudaError_t status = cudaGetLastError();
    if (status == cudaSuccess) {
        status = cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, tokens, sorted_tokens, row_ids,
                                                 sorted_rows, rows, 0, 32, stream);
    }
    if (status == cudaSuccess) {
        token_grad_kernel<<<elementwise_grid(n), kThreads, 0, stream>>>(dy, sorted_tokens, sorted_rows, rows,
                                                                         vocab, dim, dwte);
        status = cudaGetLastError();
    }
    cudaFreeAsync(scratch, stream);  // also on failure; the error reported is the first one
    check(status, "embedding_backward_cuda (iota_kernel, cub::DeviceRadixSort::SortPairs, token_grad_kernel)");
}

}  // namespace moesim::kernels::cuda
