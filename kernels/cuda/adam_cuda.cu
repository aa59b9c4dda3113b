// CUDA Adam: one grid-stride elementwise kernel; the bias-corrected step size comes from
// adam_step_size() on the host, as on CPU.
#include "kernels/cuda/adam_cuda.hpp"

#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

__global__ void adam_kernel(float* params, const float* grads, float* exp_avg, float* exp_avg_sq,
                            std::size_t n, float step_size, float b1, float b2, float eps, float decay,
                            float l2)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const float p = params[i];
        const float g = grads[i] + l2 * p;
        const float m = b1 * exp_avg[i] + (1.0f - b1) * g;
        const float v = b2 * exp_avg_sq[i] + (1.0f - b2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        params[i] = p - decay * p - step_size * m / (sqrtf(v) + eps);
    }
}

}  // namespace

void adam_step_cuda(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, std::size_t n,
                    int step, const AdamOptions& options, cudaStream_t stream)
{
    const float step_size = adam_step_size(options, step);  // also checks step >= 1
    if (n == 0) {
        return;
    }
    const float decay = options.decoupled_weight_decay ? options.lr * options.weight_decay : 0.0f;
    const float l2 = options.decoupled_weight_decay ? 0.0f : options.weight_decay;
    const std::size_t blocks = (n + 255) / 256;
    adam_kernel<<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(
        params, grads, exp_avg, exp_avg_sq, n, step_size, options.beta1, options.beta2, options.eps, decay, l2);
    detail::check_launch("adam_kernel");
}

}  // namespace moesim::kernels::cuda
