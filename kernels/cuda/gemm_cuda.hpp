// Dense fp32 GEMM on row-major device matrices through cuBLAS, with gemm.hpp's meaning:
// C = alpha * op(A) * op(B) + beta * C. (cuBLAS is column-major: the call computes
// C^T = op(B)^T op(A)^T, which is the same memory.)
#pragma once

#include <cublas_v2.h>

#include "kernels/gemm.hpp"

namespace moesim::kernels::cuda {

// Runs on the handle's stream. FP32 compute (CUBLAS_COMPUTE_32F); TF32 only if the
// caller set it on the handle.
void gemm_cuda(cublasHandle_t handle, Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
               const float* a, const float* b, float beta, float* c);

// The same on device arrays of `type` (CUDA_R_32F, CUDA_R_16F or CUDA_R_16BF) with fp32
// accumulation (CUBLAS_COMPUTE_32F): how mixed-precision training runs its linear layers.
// k > 0.
void gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, Trans trans_a, Trans trans_b, int m, int n, int k,
                     float alpha, const void* a, const void* b, float beta, void* c);

}  // namespace moesim::kernels::cuda
