// CUDA grouped GEMM (grouped_gemm.hpp) through cuBLAS's grouped batched GEMM
// (cublasGemmGroupedBatchedEx, one problem per non-empty group), falling back to one
// cublasGemmEx per group where the grouped call is not supported. Group sizes are host
// values (GroupRows over host spans); x, w, y are device pointers. With GemmPrecision bf16
// the fp32 operands are rounded to bf16 once per call (gemm_cuda.hpp's HalfCopy; fp16 alike) and each
// group is one cublasGemmEx of bf16 operands into the fp32 output (per-group launches:
// the faster on an H100, below).
#pragma once

#include <cublas_v2.h>

#include "kernels/grouped_gemm.hpp"

namespace moesim::kernels::cuda {

// y_g = x_g op(w_g) + beta y_g, as grouped_gemm().
void grouped_gemm_cuda(cublasHandle_t handle, const GroupRows& groups, const float* x, int k,
                       const float* w, Trans trans_w, int n, float beta, float* y,
                       GemmPrecision precision = GemmPrecision::fp32);

// How the groups reach cuBLAS: one cublasGemmEx per non-empty group, or one
// cublasGemmGroupedBatchedEx for all. On an H100 with cuBLAS 13.0, bf16 expert GEMMs of
// 8 experts x 4096 tokens, 2048 -> 8192, ran at 797 TFLOP/s per group and 310 TFLOP/s
// grouped, beside 794 for one dense GEMM of all their rows (bench_kernels, medians of 5,
// one run; docs/measurements/h100-bench-kernels.txt): per-group launches are the default.
enum class GroupedAlgo { PerGroup, GroupedBatched };

// The forward on device arrays of `type` (CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF) with fp32
// accumulation: the expert FFNs of mixed-precision training. k > 0.
void grouped_gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, const GroupRows& groups, const void* x,
                             int k, const void* w, Trans trans_w, int n, float beta, void* y,
                             GroupedAlgo algo = GroupedAlgo::PerGroup);

// dw_g = dy_g^T x_g (trans_w = Yes) or x_g^T dy_g (No), plus beta dw_g, as
// grouped_gemm_weight_grad().
void grouped_gemm_weight_grad_cuda(cublasHandle_t handle, const GroupRows& groups, const float* dy,
                                   int n, const float* x, int k, Trans trans_w, float beta, float* dw,
                                   GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels::cuda
