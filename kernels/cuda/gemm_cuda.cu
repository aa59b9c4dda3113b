// Row-major GEMM on cuBLAS, and the fp32 -> bf16 or fp16 rounding of its mixed-precision operands.
#include "kernels/cuda/gemm_cuda.hpp"

#include <algorithm>

#include "kernels/check.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

constexpr int kThreads = 256;

__device__ inline void round_into(float x, __nv_bfloat16* out) { *out = __float2bfloat16_rn(x); }
__device__ inline void round_into(float x, __half* out) { *out = __float2half_rn(x); }

// n contiguous elements.
template <typename Half>
__global__ void round_kernel(const float* src, std::size_t n, Half* dst)
{
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        round_into(src[i], dst + i);
    }
}

// Rows of a strided matrix: blocks stride over the rows in y and the columns in x (no
// division per element).
template <typename Half>
__global__ void round_rows_kernel(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, Half* dst)
{
    for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float* in = src + r * ld;
        Half* out = dst + r * cols;
        for (std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; c < cols;
             c += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
            round_into(in[c], out + c);
        }
    }
}

template <typename Half>
void round_to_half(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, Half* dst,
                   cudaStream_t stream, const char* fn)
{
    kernels::detail::require(ld >= cols, fn, "ld must be at least cols");
    const std::size_t n = rows * cols;
    if (n == 0) {
        return;
    }
    if (ld == cols || rows == 1) {
        const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 65535);
        round_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(src, n, dst);
        detail::check_launch(fn);
        return;
    }
    const dim3 grid(static_cast<unsigned>(std::min<std::size_t>((cols + kThreads - 1) / kThreads, 64)),
                    static_cast<unsigned>(std::min<std::size_t>(rows, 65535)));
    round_rows_kernel<<<grid, kThreads, 0, stream>>>(src, rows, cols, ld, dst);
    detail::check_launch(fn);
}

// C (m x n, of c_type) = alpha op(A) op(B) + beta C on row-major operands of `ab_type`.
void gemm_ex(cublasHandle_t handle, cudaDataType_t ab_type, cudaDataType_t c_type, Trans trans_a, Trans trans_b,
             int m, int n, int k, float alpha, const void* a, const void* b, float beta, void* c)
{
    const cublasOperation_t op_a = trans_a == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = trans_a == Trans::Yes ? m : k;
    const int ldb = trans_b == Trans::Yes ? k : n;
    check(cublasGemmEx(handle, op_b, op_a, n, m, k, &alpha, b, ab_type, ldb, a, ab_type, lda, &beta, c, c_type, n,
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
}

}  // namespace

void round_to_bf16_cuda(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, __nv_bfloat16* dst,
                        cudaStream_t stream)
{
    round_to_half(src, rows, cols, ld, dst, stream, "round_to_bf16_cuda");
}

void round_to_fp16_cuda(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, __half* dst,
                        cudaStream_t stream)
{
    round_to_half(src, rows, cols, ld, dst, stream, "round_to_fp16_cuda");
}

HalfCopy::HalfCopy(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, GemmPrecision precision,
                   cudaStream_t stream)
    : scratch_(rows * cols * sizeof(std::uint16_t), stream),
      type_(precision == GemmPrecision::fp16 ? CUDA_R_16F : CUDA_R_16BF)
{
    kernels::detail::require(precision != GemmPrecision::fp32, "HalfCopy", "precision must be bf16 or fp16");
    if (precision == GemmPrecision::fp16) {
        round_to_fp16_cuda(src, rows, cols, ld, scratch_.as<__half>(), stream);
    } else {
        round_to_bf16_cuda(src, rows, cols, ld, scratch_.as<__nv_bfloat16>(), stream);
    }
}

void gemm_cuda(cublasHandle_t handle, Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
               const float* a, const float* b, float beta, float* c, GemmPrecision precision)
{
    kernels::detail::require(m >= 0 && n >= 0 && k >= 0, "gemm_cuda", "m, n and k must be >= 0");
    if (m == 0 || n == 0) {
        return;
    }
    if (k == 0) {  // C = beta * C, without asking cuBLAS about an empty product
        cudaStream_t stream = stream_of(handle);
        if (beta == 0.0f) {
            check(cudaMemsetAsync(c, 0, static_cast<std::size_t>(m) * n * sizeof(float), stream),
                  "cudaMemsetAsync");
        } else if (beta != 1.0f) {
            check(cublasSscal(handle, m * n, &beta, c, 1), "cublasSscal");
        }
        return;
    }
    if (precision != GemmPrecision::fp32) {
        const cudaStream_t stream = stream_of(handle);
        const HalfCopy a16(a, static_cast<std::size_t>(m) * k, precision, stream);
        const HalfCopy b16(b, static_cast<std::size_t>(k) * n, precision, stream);
        gemm_ex(handle, a16.type(), CUDA_R_32F, trans_a, trans_b, m, n, k, alpha, a16.data(), b16.data(), beta, c);
        return;
    }
    gemm_ex(handle, CUDA_R_32F, CUDA_R_32F, trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

void gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, Trans trans_a, Trans trans_b, int m, int n, int k,
                     float alpha, const void* a, const void* b, float beta, void* c)
{
    kernels::detail::require(m >= 0 && n >= 0 && k > 0, "gemm_cuda_typed", "m, n >= 0 and k > 0");
    if (m == 0 || n == 0) {
        return;
    }
    gemm_ex(handle, type, type, trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

}  // namespace moesim::kernels::cuda
