// CUDA rotary position embedding: one thread per (row, pair index), grid-stride; the
// thread's cos/sin (double) serve all heads of its row. Consecutive threads take
// consecutive pair indices of one row, so a warp reads contiguous runs of each head half.
#include "kernels/cuda/rotary_cuda.hpp"

#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

// sign = +1 forward, -1 backward (negating the sine is exact, as on the CPU).
__global__ void rotary_kernel(float* x, std::size_t n, int seq, int heads, int head_dim, int half, double theta,
                              double sign, int ld)
{
    for (std::size_t t = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; t < n;
         t += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const std::size_t row = t / static_cast<std::size_t>(half);
        const int i = static_cast<int>(t % static_cast<std::size_t>(half));
        const int pos = static_cast<int>(row % static_cast<std::size_t>(seq));
        const double angle = rotary_angle(pos, i, head_dim, theta);
        const double c = cos(angle);
        const double s = sign * sin(angle);
        float* head = x + row * static_cast<std::size_t>(ld) + i;
        for (int h = 0; h < heads; ++h, head += head_dim) {
            float x0 = head[0];
            float x1 = head[half];
            rotary_rotate_pair(x0, x1, c, s);
            head[0] = x0;
            head[half] = x1;
        }
    }
}

void launch(const RotaryShape& s, float* x, int ld, double sign, cudaStream_t stream, const char* fn)
{
    kernels::detail::check_rotary_shape(s, ld, fn);
    const int half = s.head_dim / 2;
    const std::size_t n = static_cast<std::size_t>(s.rows) * half;
    if (n == 0) {
        return;
    }
    const std::size_t blocks = (n + 255) / 256;
    rotary_kernel<<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(
        x, n, s.seq, s.heads, s.head_dim, half, s.theta, sign, ld);
    detail::check_launch("rotary_kernel");
}

}  // namespace

void rotary_forward_cuda(const RotaryShape& shape, float* x, int ld, cudaStream_t stream)
{
    launch(shape, x, ld, 1.0, stream, "rotary_forward_cuda");
}

void rotary_backward_cuda(const RotaryShape& shape, float* dx, int ld, cudaStream_t stream)
{
    launch(shape, dx, ld, -1.0, stream, "rotary_backward_cuda");
}

}  // namespace moesim::kernels::cuda
