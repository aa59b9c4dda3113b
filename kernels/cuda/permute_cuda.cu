// CUDA dispatch (permute) and combine (unpermute): a block per row or per token, threads
// over the model dimension; the dispatch itself from a count, a scan over experts and a
// scatter.
#include "kernels/cuda/permute_cuda.hpp"

#include "kernels/check.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::check_launch;
using detail::grid_for;
using detail::warp_sum;

__global__ void count_kernel(const int* expert, const std::uint8_t* kept, int choices, int* counts)
{
    const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (c < choices && kept[c]) {
        atomicAdd(&counts[expert[c]], 1);
    }
}

// Offsets from counts; experts are few, so one thread does it.
__global__ void offsets_kernel(const int* counts, int experts, int capacity, bool padded, int* offsets)
{
    int sum = 0;
    for (int e = 0; e < experts; ++e) {
        offsets[e] = sum;
        sum += padded ? capacity : counts[e];
    }
    offsets[experts] = sum;
}

__global__ void place_kernel(const int* expert, const int* location, const std::uint8_t* kept,
                             int choices, int k, const int* offsets, int* source, int* row)
{
    const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= choices) {
        return;
    }
    if (!kept[c]) {
        row[c] = -1;
        return;
    }
    const int r = offsets[expert[c]] + location[c];
    row[c] = r;
    source[r] = c / k;
}

__global__ void permute_kernel(const float* x, int d, const int* source, float* y)
{
    const std::size_t r = blockIdx.x;
    const int t = source[r];
    float* dst = y + r * d;
    for (int i = static_cast<int>(threadIdx.x); i < d; i += static_cast<int>(blockDim.x)) {
        dst[i] = t >= 0 ? x[static_cast<std::size_t>(t) * d + i] : 0.0f;
    }
}

__global__ void permute_backward_kernel(const float* dy, int d, const int* row, int k, float* dx)
{
    const std::size_t t = blockIdx.x;
    for (int i = static_cast<int>(threadIdx.x); i < d; i += static_cast<int>(blockDim.x)) {
        float s = 0.0f;
        for (int j = 0; j < k; ++j) {
            const int r = row[t * k + j];
            s += r >= 0 ? dy[static_cast<std::size_t>(r) * d + i] : 0.0f;
        }
        dx[t * d + i] = s;
    }
}

__global__ void unpermute_kernel(const float* y, int d, const int* row, const float* weight, int k,
                                 float* out)
{
    const std::size_t t = blockIdx.x;
    for (int i = static_cast<int>(threadIdx.x); i < d; i += static_cast<int>(blockDim.x)) {
        float s = 0.0f;
        for (int j = 0; j < k; ++j) {
            const int r = row[t * k + j];
            s += r >= 0 ? weight[t * k + j] * y[static_cast<std::size_t>(r) * d + i] : 0.0f;
        }
        out[t * d + i] = s;
    }
}

__global__ void unpermute_backward_rows_kernel(const float* dout, int d, const int* source,
                                               const int* row, const float* weight, int k, float* dy)
{
    const std::size_t r = blockIdx.x;
    const int t = source[r];
    float w = 0.0f;
    if (t >= 0) {
        for (int j = 0; j < k; ++j) {
            if (row[static_cast<std::size_t>(t) * k + j] == static_cast<int>(r)) {
                w = weight[static_cast<std::size_t>(t) * k + j];
            }
        }
    }
    for (int i = static_cast<int>(threadIdx.x); i < d; i += static_cast<int>(blockDim.x)) {
        dy[r * d + i] = t >= 0 ? w * dout[static_cast<std::size_t>(t) * d + i] : 0.0f;
    }
}

// One warp per choice.
__global__ void unpermute_backward_weight_kernel(const float* dout, const float* y, int d,
                                                 const int* row, int choices, int k, float* dweight)
{
    const int c = static_cast<int>((blockIdx.x * blockDim.x + threadIdx.x) / 32);
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (c >= choices) {
        return;
    }
    const int r = row[c];
    double s = 0.0;
    if (r >= 0) {
        const float* g = dout + static_cast<std::size_t>(c / k) * d;
        const float* v = y + static_cast<std::size_t>(r) * d;
        for (int i = lane; i < d; i += 32) {
            s += static_cast<double>(g[i]) * v[i];
        }
    }
    s = warp_sum(s);
    if (lane == 0) {
        dweight[c] = static_cast<float>(s);
    }
}

unsigned threads_for(int d)
{
    return d >= 256 ? 256u : (d >= 128 ? 128u : 64u);
}

}  // namespace

int make_dispatch_cuda(const int* expert, const int* location, const std::uint8_t* kept,
                       int tokens, int experts, int k, int capacity, DispatchLayout layout,
                       const DispatchDevice& out, cudaStream_t stream)
{
    const int bound = dispatch_rows_bound(tokens, experts, k, capacity, layout);
    const int choices = tokens * k;
    check(cudaMemsetAsync(out.counts, 0, static_cast<std::size_t>(experts) * sizeof(int), stream),
          "cudaMemsetAsync(counts)");
    if (bound > 0) {
        check(cudaMemsetAsync(out.source, 0xff, static_cast<std::size_t>(bound) * sizeof(int), stream),
              "cudaMemsetAsync(source)");  // all bytes 0xff: -1
    }
    if (choices > 0) {
        count_kernel<<<grid_for(static_cast<std::size_t>(choices), 256), 256, 0, stream>>>(
            expert, kept, choices, out.counts);
        check_launch("count_kernel");
    }
    offsets_kernel<<<1, 1, 0, stream>>>(out.counts, experts, capacity,
                                        layout == DispatchLayout::Padded, out.offsets);
    check_launch("offsets_kernel");
    if (choices > 0) {
        place_kernel<<<grid_for(static_cast<std::size_t>(choices), 256), 256, 0, stream>>>(
            expert, location, kept, choices, k, out.offsets, out.source, out.row);
        check_launch("place_kernel");
    }
    int rows = 0;
    check(cudaMemcpyAsync(&rows, out.offsets + experts, sizeof(int), cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync(rows)");
    check(cudaStreamSynchronize(stream), "make_dispatch_cuda: cudaStreamSynchronize");
    return rows;
}

void permute_cuda(const float* x, int d, const int* source, int rows, float* y, cudaStream_t stream)
{
    if (rows == 0 || d == 0) {
        return;
    }
    permute_kernel<<<static_cast<unsigned>(rows), threads_for(d), 0, stream>>>(x, d, source, y);
    check_launch("permute_kernel");
}

void permute_backward_cuda(const float* dy, int d, const int* row, int tokens, int k, float* dx,
                           cudaStream_t stream)
{
    if (tokens == 0 || d == 0) {
        return;
    }
    permute_backward_kernel<<<static_cast<unsigned>(tokens), threads_for(d), 0, stream>>>(dy, d, row, k, dx);
    check_launch("permute_backward_kernel");
}

void unpermute_cuda(const float* y, int d, const int* row, const float* weight, int tokens, int k,
                    float* out, cudaStream_t stream)
{
    if (tokens == 0 || d == 0) {
        return;
    }
    unpermute_kernel<<<static_cast<unsigned>(tokens), threads_for(d), 0, stream>>>(y, d, row, weight, k, out);
    check_launch("unpermute_kernel");
}

void unpermute_backward_cuda(const float* dout, const float* y, int d, const int* source,
                             const int* row, int rows, const float* weight, int tokens, int k,
                             float* dy, float* dweight, cudaStream_t stream)
{
    if (rows > 0 && d > 0) {
        unpermute_backward_rows_kernel<<<static_cast<unsigned>(rows), threads_for(d), 0, stream>>>(
            dout, d, source, row, weight, k, dy);
        check_launch("unpermute_backward_rows_kernel");
    }
    const int choices = tokens * k;
    if (choices > 0) {
        unpermute_backward_weight_kernel<<<grid_for(static_cast<std::size_t>(choices), 8), 256, 0, stream>>>(
            dout, y, d, row, choices, k, dweight);
        check_launch("unpermute_backward_weight_kernel");
    }
}

}  // namespace moesim::kernels::cuda
