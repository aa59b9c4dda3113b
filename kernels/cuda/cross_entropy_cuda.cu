// CUDA cross-entropy: one block per row (max, sum of exponentials, loss), then one block
// sums the row losses in double.
#include "kernels/cuda/cross_entropy_cuda.hpp"

#include <cfloat>
#include <stdexcept>
#include <string>

#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::block_sum;
using detail::check_launch;

constexpr int kThreads = 256;

__device__ float block_max(float v)
{
    __shared__ float partial[32];
    const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
    v = detail::warp_max(v);
    __syncthreads();
    if (lane == 0) {
        partial[warp] = v;
    }
    __syncthreads();
    float m = -FLT_MAX;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
        m = fmaxf(m, partial[w]);
    }
    return m;
}

// bad_row gets the lowest row with an invalid target (atomicMin), else stays INT_MAX.
__global__ void cross_entropy_kernel(const float* logits, const std::int32_t* targets, int classes,
                                     std::int32_t ignore_index, float* lse, double* loss, int* bad_row)
{
    const int r = static_cast<int>(blockIdx.x);
    const float* x = logits + static_cast<std::size_t>(r) * classes;
    float m = -FLT_MAX;
    for (int c = static_cast<int>(threadIdx.x); c < classes; c += static_cast<int>(blockDim.x)) {
        m = fmaxf(m, x[c]);
    }
    m = block_max(m);
    double s = 0.0;
    for (int c = static_cast<int>(threadIdx.x); c < classes; c += static_cast<int>(blockDim.x)) {
        s += exp(static_cast<double>(x[c] - m));
    }
    s = block_sum(s);
    if (threadIdx.x == 0) {
        const double l = m + log(s);
        lse[r] = static_cast<float>(l);
        const std::int32_t t = targets[r];
        if (t == ignore_index) {
            loss[r] = 0.0;
        } else if (t < 0 || t >= classes) {
            loss[r] = 0.0;
            atomicMin(bad_row, r);
        } else {
            loss[r] = l - x[t];
        }
    }
}

__global__ void loss_sum_kernel(const double* loss, const std::int32_t* targets, int rows,
                                std::int32_t ignore_index, double* sum, int* count)
{
    double s = 0.0;
    int n = 0;
    for (int r = static_cast<int>(threadIdx.x); r < rows; r += static_cast<int>(blockDim.x)) {
        s += loss[r];
        n += targets[r] != ignore_index ? 1 : 0;
    }
    s = block_sum(s);
    n = block_sum(n);
    if (threadIdx.x == 0) {
        *sum = s;
        *count = n;
    }
}

__global__ void cross_entropy_backward_kernel(const float* logits, const std::int32_t* targets,
                                              const float* lse, int classes, std::int32_t ignore_index,
                                              float grad_scale, float* dlogits)
{
    const std::size_t r = blockIdx.x;
    const std::int32_t t = targets[r];
    const float* x = logits + r * classes;
    float* dx = dlogits + r * classes;
    const bool valid = t != ignore_index && t >= 0 && t < classes;
    for (int c = static_cast<int>(threadIdx.x); c < classes; c += static_cast<int>(blockDim.x)) {
        float g = 0.0f;
        if (valid) {
            g = grad_scale * expf(x[c] - lse[r]);
            g -= c == t ? grad_scale : 0.0f;
        }
        dx[c] = g;
    }
}

}  // namespace

CrossEntropyResult cross_entropy_cuda(const float* logits, const std::int32_t* targets, int rows,
                                      int classes, std::int32_t ignore_index, float* lse,
                                      cudaStream_t stream)
{
    CrossEntropyResult result;
    if (rows == 0) {
        return result;
    }
    void* scratch = nullptr;
    const std::size_t loss_bytes = static_cast<std::size_t>(rows) * sizeof(double);
    check(cudaMallocAsync(&scratch, loss_bytes + sizeof(double) + 2 * sizeof(int), stream),
          "cudaMallocAsync");
    double* loss = static_cast<double*>(scratch);
    double* sum = loss + rows;
    int* ints = reinterpret_cast<int*>(sum + 1);  // count, bad_row
    const int init[2] = {0, 0x7fffffff};
    check(cudaMemcpyAsync(ints, init, sizeof(init), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    cross_entropy_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        logits, targets, classes, ignore_index, lse, loss, ints + 1);
    check_launch("cross_entropy_kernel");
    loss_sum_kernel<<<1, 1024, 0, stream>>>(loss, targets, rows, ignore_index, sum, ints);
    check_launch("loss_sum_kernel");
    double host_sum = 0.0;
    int host_ints[2] = {0, 0};
    check(cudaMemcpyAsync(&host_sum, sum, sizeof(double), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(host_ints, ints, sizeof(host_ints), cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync");
    check(cudaFreeAsync(scratch, stream), "cudaFreeAsync");
    check(cudaStreamSynchronize(stream), "cross_entropy_cuda: cudaStreamSynchronize");
    if (host_ints[1] != 0x7fffffff) {
        throw std::out_of_range("moesim::kernels::cross_entropy_cuda: row " + std::to_string(host_ints[1]) +
                                " has a target outside [0, " + std::to_string(classes) + ")");
    }
    result.loss_sum = host_sum;
    result.count = host_ints[0];
    return result;
}

void cross_entropy_backward_cuda(const float* logits, const std::int32_t* targets, const float* lse,
                                 int rows, int classes, std::int32_t ignore_index, float grad_scale,
                                 float* dlogits, cudaStream_t stream)
{
    if (rows == 0) {
        return;
    }
    cross_entropy_backward_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        logits, targets, lse, classes, ignore_index, grad_scale, dlogits);
    check_launch("cross_entropy_backward_kernel");
}

}  // namespace moesim::kernels::cuda
