// CUDA bias + GELU: elementwise, grid-stride; the bias gradient is a column sum.
#include "kernels/cuda/activation_cuda.hpp"

#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

__global__ void bias_gelu_kernel(const float* x, const float* bias, std::size_t n, int cols, Gelu kind,
                                 float* y)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const float b = bias ? bias[i % cols] : 0.0f;
        y[i] = gelu(x[i] + b, kind);
    }
}

__global__ void bias_gelu_backward_kernel(const float* dy, const float* x, const float* bias,
                                          std::size_t n, int cols, Gelu kind, float* dx)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const float b = bias ? bias[i % cols] : 0.0f;
        dx[i] = dy[i] * gelu_grad(x[i] + b, kind);
    }
}

unsigned elementwise_grid(std::size_t n)
{
    const std::size_t blocks = (n + 255) / 256;
    return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace

void bias_gelu_cuda(const float* x, const float* bias, int rows, int cols, Gelu kind, float* y,
                    cudaStream_t stream)
{
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (n == 0) {
        return;
    }
    bias_gelu_kernel<<<elementwise_grid(n), 256, 0, stream>>>(x, bias, n, cols, kind, y);
    detail::check_launch("bias_gelu_kernel");
}

void bias_gelu_backward_cuda(const float* dy, const float* x, const float* bias, int rows, int cols,
                             Gelu kind, float* dx, float* dbias, cudaStream_t stream)
{
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (n > 0) {
        bias_gelu_backward_kernel<<<elementwise_grid(n), 256, 0, stream>>>(dy, x, bias, n, cols, kind, dx);
        detail::check_launch("bias_gelu_backward_kernel");
    }
    if (dbias) {
        detail::column_sum(dx, rows, cols, 0.0f, dbias, stream);
    }
}

}  // namespace moesim::kernels::cuda
