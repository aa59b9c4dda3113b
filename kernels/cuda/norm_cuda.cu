// CUDA norms: one block per row for the forward and the input gradient; the gamma/beta
// gradients are column reductions over rows.
#include "kernels/cuda/norm_cuda.hpp"

#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::block_sum;
using detail::check_launch;
using detail::grid_for;

constexpr int kThreads = 256;

__global__ void layer_norm_kernel(const float* x, const float* gamma, const float* beta, int cols,
                                  float eps, float* y, float* mean, float* rstd)
{
    const std::size_t row0 = static_cast<std::size_t>(blockIdx.x) * cols;
    const float* in = x + row0;
    float s = 0.0f;
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        s += in[c];
    }
    const float mu = block_sum(s) / static_cast<float>(cols);
    float v = 0.0f;
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        v += (in[c] - mu) * (in[c] - mu);
    }
    const float var = block_sum(v) / static_cast<float>(cols);
    const float r = rsqrtf(var + eps);
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        y[row0 + c] = (in[c] - mu) * r * gamma[c] + beta[c];
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
}

// rms = true: RMSNorm (mean treated as 0, no mean term in the gradient).
__global__ void norm_backward_input_kernel(const float* dy, const float* x, const float* gamma,
                                           const float* mean, const float* rstd, int cols, bool rms,
                                           float* dx)
{
    const std::size_t row0 = static_cast<std::size_t>(blockIdx.x) * cols;
    const float m = rms ? 0.0f : mean[blockIdx.x];
    const float r = rstd[blockIdx.x];
    float a = 0.0f, b = 0.0f;
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        const float xhat = (x[row0 + c] - m) * r;
        const float dxhat = dy[row0 + c] * gamma[c];
        a += dxhat;
        b += dxhat * xhat;
    }
    const float mean_dxhat = rms ? 0.0f : block_sum(a) / static_cast<float>(cols);
    const float mean_dxhat_xhat = block_sum(b) / static_cast<float>(cols);
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        const float xhat = (x[row0 + c] - m) * r;
        dx[row0 + c] = r * (dy[row0 + c] * gamma[c] - mean_dxhat - xhat * mean_dxhat_xhat);
    }
}

// dgamma[c] = sum_r dy * xhat, dbeta[c] = sum_r dy; 32 columns per block of 32 x 8.
__global__ void norm_backward_params_kernel(const float* dy, const float* x, const float* mean,
                                            const float* rstd, int rows, int cols, bool rms,
                                            float* dgamma, float* dbeta)
{
    __shared__ float g_tile[8][33];
    __shared__ float b_tile[8][33];
    const int c = static_cast<int>(blockIdx.x * 32 + threadIdx.x);
    float g = 0.0f, b = 0.0f;
    if (c < cols) {
        for (int r = static_cast<int>(threadIdx.y); r < rows; r += 8) {
            const std::size_t i = static_cast<std::size_t>(r) * cols + c;
            const float m = rms ? 0.0f : mean[r];
            g += dy[i] * (x[i] - m) * rstd[r];
            b += dy[i];
        }
    }
    g_tile[threadIdx.y][threadIdx.x] = g;
    b_tile[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float gs = 0.0f, bs = 0.0f;
        for (int j = 0; j < 8; ++j) {
            gs += g_tile[j][threadIdx.x];
            bs += b_tile[j][threadIdx.x];
        }
        if (dgamma) {
            dgamma[c] = gs;
        }
        if (dbeta) {
            dbeta[c] = bs;
        }
    }
}

__global__ void rms_norm_kernel(const float* x, const float* gamma, int cols, float eps, float* y,
                                float* rstd)
{
    const std::size_t row0 = static_cast<std::size_t>(blockIdx.x) * cols;
    const float* in = x + row0;
    float s = 0.0f;
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        s += in[c] * in[c];
    }
    const float r = rsqrtf(block_sum(s) / static_cast<float>(cols) + eps);
    for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
        y[row0 + c] = in[c] * r * gamma[c];
    }
    if (threadIdx.x == 0) {
        rstd[blockIdx.x] = r;
    }
}

void backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
              int rows, int cols, bool rms, float* dx, float* dgamma, float* dbeta, cudaStream_t stream)
{
    if (rows > 0) {
        norm_backward_input_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
            dy, x, gamma, mean, rstd, cols, rms, dx);
        check_launch("norm_backward_input_kernel");
    }
    if ((dgamma || dbeta) && cols > 0) {
        norm_backward_params_kernel<<<grid_for(static_cast<std::size_t>(cols), 32), dim3(32, 8), 0, stream>>>(
            dy, x, mean, rstd, rows, cols, rms, dgamma, dbeta);
        check_launch("norm_backward_params_kernel");
    }
}

}  // namespace

void layer_norm_cuda(const float* x, const float* gamma, const float* beta, int rows, int cols,
                     float eps, float* y, float* mean, float* rstd, cudaStream_t stream)
{
    if (rows == 0) {
        return;
    }
    layer_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, gamma, beta, cols, eps, y,
                                                                             mean, rstd);
    check_launch("layer_norm_kernel");
}

void layer_norm_backward_cuda(const float* dy, const float* x, const float* gamma, const float* mean,
                              const float* rstd, int rows, int cols, float* dx, float* dgamma,
                              float* dbeta, cudaStream_t stream)
{
    backward(dy, x, gamma, mean, rstd, rows, cols, false, dx, dgamma, dbeta, stream);
}

void rms_norm_cuda(const float* x, const float* gamma, int rows, int cols, float eps, float* y,
                   float* rstd, cudaStream_t stream)
{
    if (rows == 0) {
        return;
    }
    rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, gamma, cols, eps, y, rstd);
    check_launch("rms_norm_kernel");
}

void rms_norm_backward_cuda(const float* dy, const float* x, const float* gamma, const float* rstd,
                            int rows, int cols, float* dx, float* dgamma, cudaStream_t stream)
{
    backward(dy, x, gamma, nullptr, rstd, rows, cols, true, dx, dgamma, nullptr, stream);
}

}  // namespace moesim::kernels::cuda
