// Row-major GEMM on cuBLAS.
#include "kernels/cuda/gemm_cuda.hpp"

#include "kernels/check.hpp"
#include "kernels/cuda/device.hpp"

namespace moesim::kernels::cuda {

void gemm_cuda(cublasHandle_t handle, Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
               const float* a, const float* b, float beta, float* c)
{
    kernels::detail::require(m >= 0 && n >= 0 && k >= 0, "gemm_cuda", "m, n and k must be >= 0");
    if (m == 0 || n == 0) {
        return;
    }
    if (k == 0) {  // C = beta * C, without asking cuBLAS about an empty product
        cudaStream_t stream = nullptr;
        check(cublasGetStream(handle, &stream), "cublasGetStream");
        if (beta == 0.0f) {
            check(cudaMemsetAsync(c, 0, static_cast<std::size_t>(m) * n * sizeof(float), stream),
                  "cudaMemsetAsync");
        } else if (beta != 1.0f) {
            check(cublasSscal(handle, m * n, &beta, c, 1), "cublasSscal");
        }
        return;
    }
    const cublasOperation_t op_a = trans_a == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = trans_a == Trans::Yes ? m : k;
    const int ldb = trans_b == Trans::Yes ? k : n;
    check(cublasGemmEx(handle, op_b, op_a, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta,
                       c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
}

void gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, Trans trans_a, Trans trans_b, int m, int n, int k,
                     float alpha, const void* a, const void* b, float beta, void* c)
{
    kernels::detail::require(m >= 0 && n >= 0 && k > 0, "gemm_cuda_typed", "m, n >= 0 and k > 0");
    if (m == 0 || n == 0) {
        return;
    }
    const cublasOperation_t op_a = trans_a == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = trans_a == Trans::Yes ? m : k;
    const int ldb = trans_b == Trans::Yes ? k : n;
    check(cublasGemmEx(handle, op_b, op_a, n, m, k, &alpha, b, type, ldb, a, type, lda, &beta, c, type, n,
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
}

}  // namespace moesim::kernels::cuda
