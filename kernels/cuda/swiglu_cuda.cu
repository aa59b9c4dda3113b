// CUDA SwiGLU: elementwise over the rows x f outputs, grid-stride; each thread reads its
// gate and value columns (f apart in the same row) and, backward, writes both gradients.
#include "kernels/cuda/swiglu_cuda.hpp"

#include "kernels/check.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

__global__ void swiglu_kernel(const float* x, std::size_t n, int f, float* y)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const std::size_t r = i / static_cast<std::size_t>(f);
        const float* a = x + r * 2 * static_cast<std::size_t>(f) + (i - r * f);
        y[i] = silu(a[0]) * a[f];
    }
}

// x and dx may alias: this thread alone touches columns c and c + f of its row, and reads
// both before writing (no __restrict__ on them for that reason).
__global__ void swiglu_backward_kernel(const float* dy, const float* x, std::size_t n, int f, float* dx)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const std::size_t r = i / static_cast<std::size_t>(f);
        const std::size_t at = r * 2 * static_cast<std::size_t>(f) + (i - r * f);
        const float a = x[at];
        const float b = x[at + f];
        const float g = dy[i];
        dx[at] = g * b * silu_grad(a);
        dx[at + f] = g * silu(a);
    }
}

unsigned grid(std::size_t n)
{
    const std::size_t blocks = (n + 255) / 256;
    return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

void check_sizes(int rows, int f, const char* fn)
{
    kernels::detail::require(rows >= 0 && f >= 0, fn, "rows and f must be >= 0");
}

}  // namespace

void swiglu_forward_cuda(const float* x, int rows, int f, float* y, cudaStream_t stream)
{
    check_sizes(rows, f, "swiglu_forward_cuda");
    const std::size_t n = static_cast<std::size_t>(rows) * f;
    if (n == 0) {
        return;
    }
    swiglu_kernel<<<grid(n), 256, 0, stream>>>(x, n, f, y);
    detail::check_launch("swiglu_kernel");
}

void swiglu_backward_cuda(const float* dy, const float* x, int rows, int f, float* dx, cudaStream_t stream)
{
    check_sizes(rows, f, "swiglu_backward_cuda");
    const std::size_t n = static_cast<std::size_t>(rows) * f;
    if (n == 0) {
        return;
    }
    swiglu_backward_kernel<<<grid(n), 256, 0, stream>>>(dy, x, n, f, dx);
    detail::check_launch("swiglu_backward_kernel");
}

}  // namespace moesim::kernels::cuda
