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

}  // namespace moesim::kernels::cuda
