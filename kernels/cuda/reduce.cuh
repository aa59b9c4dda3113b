// Device helpers shared by the .cu files (internal): warp and block reductions, a block
// exclusive scan, launch checks and grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/device.hpp"

namespace moesim::kernels::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;

template <class T>
__device__ inline T warp_sum(T v)
{
    for (int offset = 16; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(kFullMask, v, offset);
    }
    return v;
}

__device__ inline float warp_max(float v)
{
    for (int offset = 16; offset > 0; offset /= 2) {
        v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
    }
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <class T>
__device__ inline T block_sum(T v)
{
    __shared__ T partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int warps = (blockDim.x + 31) / 32;
    v = warp_sum(v);
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) {
        partial[warp] = v;
    }
    __syncthreads();
    T total = T(0);
    for (int w = 0; w < warps; ++w) {
        total += partial[w];
    }
    return total;
}

// Exclusive prefix sum of one int per thread over the block; *total gets the block sum.
__device__ inline int block_exclusive_scan(int v, int* total)
{
    __shared__ int warp_totals[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int warps = (blockDim.x + 31) / 32;
    int inclusive = v;
    for (int offset = 1; offset < 32; offset *= 2) {
        const int up = __shfl_up_sync(kFullMask, inclusive, offset);
        if (lane >= offset) {
            inclusive += up;
        }
    }
    __syncthreads();
    if (lane == 31) {
        warp_totals[warp] = inclusive;
    }
    __syncthreads();
    int before = 0, sum = 0;
    for (int w = 0; w < warps; ++w) {
        before += w < warp ? warp_totals[w] : 0;
        sum += warp_totals[w];
    }
    *total = sum;
    return before + inclusive - v;
}

// Blocks needed to cover n items with `per_block` items each.
inline unsigned grid_for(std::size_t n, std::size_t per_block)
{
    const std::size_t blocks = (n + per_block - 1) / per_block;
    return static_cast<unsigned>(blocks > 0 ? blocks : 1);
}

// Checks the last launch (configuration errors surface here, execution errors later).
inline void check_launch(const char* kernel)
{
    check(cudaGetLastError(), kernel);
}

// out[c] = sum_r m[r][c] (+ beta * out[c]) for a rows x cols row-major matrix; a block of
// 32 x 8 threads covers 32 columns.
// (A template so that every .cu file may include it without a duplicate symbol.)
template <class T>
__global__ void column_sum_kernel(const T* m, int rows, int cols, T beta, T* out)
{
    __shared__ T tile[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    T acc = T(0);
    if (c < cols) {
        for (int r = threadIdx.y; r < rows; r += 8) {
            acc += m[static_cast<std::size_t>(r) * cols + c];
        }
    }
    tile[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        T s = T(0);
        for (int y = 0; y < 8; ++y) {
            s += tile[y][threadIdx.x];
        }
        out[c] = s + (beta != T(0) ? beta * out[c] : T(0));
    }
}

inline void column_sum(const float* m, int rows, int cols, float beta, float* out, cudaStream_t stream)
{
    if (cols == 0) {
        return;
    }
    column_sum_kernel<float><<<grid_for(static_cast<std::size_t>(cols), 32), dim3(32, 8), 0, stream>>>(
        m, rows, cols, beta, out);
    check_launch("column_sum_kernel");
}

}  // namespace moesim::kernels::cuda::detail
