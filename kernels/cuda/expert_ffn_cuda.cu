// CUDA expert FFNs: two grouped GEMMs around a per-expert bias + GELU; each element finds
// its expert by binary search over the group offsets.
#include "kernels/cuda/expert_ffn_cuda.hpp"

#include <vector>

#include "kernels/check.hpp"
#include "kernels/cuda/grouped_gemm_cuda.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::check_launch;

// Group of row r, or -1 when r lies in no group (padding slots).
__device__ int group_of(int r, const int* offsets, const int* counts, int groups)
{
    int lo = 0, hi = groups;  // last g with offsets[g] <= r
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (offsets[mid] <= r) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    const int g = lo - 1;
    return g >= 0 && r < offsets[g] + counts[g] ? g : -1;
}

__global__ void grouped_bias_gelu_kernel(const float* pre, const float* bias, const int* offsets,
                                         const int* counts, int groups, std::size_t n, int cols, Gelu kind,
                                         float* act)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const int g = group_of(static_cast<int>(i / cols), offsets, counts, groups);
        if (g >= 0) {
            const int c = static_cast<int>(i % cols);
            act[i] = gelu(pre[i] + bias[static_cast<std::size_t>(g) * cols + c], kind);
        }
    }
}

// In place: d = d * gelu'(pre + bias_g).
__global__ void grouped_bias_gelu_backward_kernel(float* d, const float* pre, const float* bias,
                                                  const int* offsets, const int* counts, int groups,
                                                  std::size_t n, int cols, Gelu kind)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const int g = group_of(static_cast<int>(i / cols), offsets, counts, groups);
        if (g >= 0) {
            const int c = static_cast<int>(i % cols);
            d[i] *= gelu_grad(pre[i] + bias[static_cast<std::size_t>(g) * cols + c], kind);
        }
    }
}

__global__ void grouped_add_bias_kernel(float* y, const float* bias, const int* offsets, const int* counts,
                                        int groups, std::size_t n, int cols)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        const int g = group_of(static_cast<int>(i / cols), offsets, counts, groups);
        if (g >= 0) {
            y[i] += bias[static_cast<std::size_t>(g) * cols + (i % cols)];
        }
    }
}

// out[g][c] = sum over group g's rows of m[r][c] (+ beta * out[g][c]); grid (column
// blocks of 32, groups), blocks of 32 x 8.
__global__ void grouped_column_sum_kernel(const float* m, const int* offsets, const int* counts, int cols,
                                          float beta, float* out)
{
    __shared__ float tile[8][33];
    const int g = static_cast<int>(blockIdx.y);
    const int c = static_cast<int>(blockIdx.x * 32 + threadIdx.x);
    float acc = 0.0f;
    if (c < cols) {
        for (int r = offsets[g] + static_cast<int>(threadIdx.y); r < offsets[g] + counts[g]; r += 8) {
            acc += m[static_cast<std::size_t>(r) * cols + c];
        }
    }
    tile[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float s = 0.0f;
        for (int j = 0; j < 8; ++j) {
            s += tile[j][threadIdx.x];
        }
        float* o = out + static_cast<std::size_t>(g) * cols + c;
        *o = s + (beta != 0.0f ? beta * *o : 0.0f);
    }
}

unsigned elementwise_grid(std::size_t n)
{
    const std::size_t blocks = (n + 255) / 256;
    return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

// Group offsets and counts copied to the device for the elementwise kernels.
struct DeviceGroups {
    int* data = nullptr;
    cudaStream_t stream = nullptr;
    int count = 0;
    DeviceGroups(const GroupRows& g, cudaStream_t s) : stream(s), count(static_cast<int>(g.counts.size()))
    {
        std::vector<int> host(2 * g.counts.size());
        for (std::size_t i = 0; i < g.counts.size(); ++i) {
            host[i] = g.offsets[i];
            host[g.counts.size() + i] = g.counts[i];
        }
        void* p = nullptr;
        check(cudaMallocAsync(&p, (host.empty() ? 1 : host.size()) * sizeof(int), stream), "cudaMallocAsync");
        data = static_cast<int*>(p);
        check(cudaMemcpyAsync(data, host.data(), host.size() * sizeof(int), cudaMemcpyHostToDevice, stream),
              "cudaMemcpyAsync");
    }
    ~DeviceGroups() { cudaFreeAsync(data, stream); }
    DeviceGroups(const DeviceGroups&) = delete;
    DeviceGroups& operator=(const DeviceGroups&) = delete;
    const int* offsets() const { return data; }
    const int* counts() const { return data + count; }
};

void check_shape(const ExpertFfnShape& s, const GroupRows& g, const char* fn)
{
    kernels::detail::require(s.experts >= 1 && s.model_dim >= 1 && s.ffn_dim >= 1, fn,
                             "experts, model_dim and ffn_dim must be >= 1");
    kernels::detail::require_size(g.counts.size(), static_cast<std::size_t>(s.experts), fn, "groups.counts");
}

}  // namespace

void expert_ffn_forward_cuda(cublasHandle_t handle, const ExpertFfnShape& shape, const GroupRows& groups,
                             const float* x, const ExpertFfnDeviceWeights& weights, float* pre, float* act,
                             float* y, GemmPrecision precision)
{
    check_shape(shape, groups, "expert_ffn_forward_cuda");
    const int d = shape.model_dim, f = shape.ffn_dim;
    const cudaStream_t stream = stream_of(handle);
    const DeviceGroups dev(groups, stream);
    grouped_gemm_cuda(handle, groups, x, d, weights.w1, Trans::Yes, f, 0.0f, pre, precision);
    const std::size_t nf = static_cast<std::size_t>(groups.rows) * f;
    if (nf > 0) {
        grouped_bias_gelu_kernel<<<elementwise_grid(nf), 256, 0, stream>>>(
            pre, weights.b1, dev.offsets(), dev.counts(), dev.count, nf, f, shape.activation, act);
        check_launch("grouped_bias_gelu_kernel");
    }
    grouped_gemm_cuda(handle, groups, act, f, weights.w2, Trans::Yes, d, 0.0f, y, precision);
    const std::size_t nd = static_cast<std::size_t>(groups.rows) * d;
    if (nd > 0) {
        grouped_add_bias_kernel<<<elementwise_grid(nd), 256, 0, stream>>>(y, weights.b2, dev.offsets(),
                                                                          dev.counts(), dev.count, nd, d);
        check_launch("grouped_add_bias_kernel");
    }
}

void expert_ffn_backward_cuda(cublasHandle_t handle, const ExpertFfnShape& shape, const GroupRows& groups,
                              const float* dy, const float* x, const ExpertFfnDeviceWeights& weights,
                              const float* pre, const float* act, float* dx, const ExpertFfnDeviceGrads& grads,
                              bool accumulate, GemmPrecision precision)
{
    check_shape(shape, groups, "expert_ffn_backward_cuda");
    const int d = shape.model_dim, f = shape.ffn_dim;
    const float beta = accumulate ? 1.0f : 0.0f;
    const cudaStream_t stream = stream_of(handle);
    const DeviceGroups dev(groups, stream);
    const dim3 sum_grid_d((d + 31) / 32, static_cast<unsigned>(shape.experts));
    const dim3 sum_grid_f((f + 31) / 32, static_cast<unsigned>(shape.experts));

    grouped_gemm_weight_grad_cuda(handle, groups, dy, d, act, f, Trans::Yes, beta, grads.w2, precision);
    grouped_column_sum_kernel<<<sum_grid_d, dim3(32, 8), 0, stream>>>(dy, dev.offsets(), dev.counts(), d, beta,
                                                                      grads.b2);
    check_launch("grouped_column_sum_kernel");

    const std::size_t nf = static_cast<std::size_t>(groups.rows) * f;
    void* scratch = nullptr;
    check(cudaMallocAsync(&scratch, (nf > 0 ? nf : 1) * sizeof(float), stream), "cudaMallocAsync");
    float* dpre = static_cast<float*>(scratch);
    grouped_gemm_cuda(handle, groups, dy, d, weights.w2, Trans::No, f, 0.0f, dpre, precision);
    if (nf > 0) {
        grouped_bias_gelu_backward_kernel<<<elementwise_grid(nf), 256, 0, stream>>>(
            dpre, pre, weights.b1, dev.offsets(), dev.counts(), dev.count, nf, f, shape.activation);
        check_launch("grouped_bias_gelu_backward_kernel");
    }
    grouped_column_sum_kernel<<<sum_grid_f, dim3(32, 8), 0, stream>>>(dpre, dev.offsets(), dev.counts(), f, beta,
                                                                      grads.b1);
    check_launch("grouped_column_sum_kernel");
    grouped_gemm_weight_grad_cuda(handle, groups, dpre, f, x, d, Trans::Yes, beta, grads.w1, precision);
    grouped_gemm_cuda(handle, groups, dpre, f, weights.w1, Trans::No, d, 0.0f, dx, precision);
    check(cudaFreeAsync(scratch, stream), "cudaFreeAsync");
}

}  // namespace moesim::kernels::cuda
