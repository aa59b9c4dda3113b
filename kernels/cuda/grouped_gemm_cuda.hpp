// CUDA grouped GEMM (grouped_gemm.hpp) through cuBLAS's grouped batched GEMM
// (cublasGemmGroupedBatchedEx, one problem per non-empty group), falling back to one
// cublasGemmEx per group where the grouped call is not supported. Group sizes are host
// values (GroupRows over host spans); x, w, y are device pointers.
#pragma once

#include <cublas_v2.h>

#include "kernels/grouped_gemm.hpp"

namespace moesim::kernels::cuda {

// y_g = x_g op(w_g) + beta y_g, as grouped_gemm().
void grouped_gemm_cuda(cublasHandle_t handle, const GroupRows& groups, const float* x, int k,
                       const float* w, Trans trans_w, int n, float beta, float* y);

// dw_g = dy_g^T x_g (trans_w = Yes) or x_g^T dy_g (No), plus beta dw_g, as
// grouped_gemm_weight_grad().
void grouped_gemm_weight_grad_cuda(cublasHandle_t handle, const GroupRows& groups, const float* dy,
                                   int n, const float* x, int k, Trans trans_w, float beta, float* dw);

}  // namespace moesim::kernels::cuda
