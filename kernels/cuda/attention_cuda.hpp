// CUDA causal self-attention (attention.hpp), forward and backward, on device pointers:
// cuBLAS strided-batched GEMMs over the heads of each sequence (fp32 compute) around a
// causal softmax kernel and its backward. Same layout and semantics as the CPU reference.
#pragma once

#include <cublas_v2.h>

#include "kernels/attention.hpp"
#include "kernels/gemm.hpp"

namespace moesim::kernels::cuda {

// Work runs on the cuBLAS handle's stream (as the other cuBLAS kernels here: set it with
// cublasSetStream). FP32 compute (CUBLAS_COMPUTE_32F); TF32 only if the caller set it on
// the handle. q, k, v, ctx and probs as attention_forward(); the softmax is fp32 with the
// row maximum subtracted, and probs is exactly 0 above the diagonal. Deterministic for a
// given GPU and cuBLAS version. Invalid shapes throw std::invalid_argument. `precision`
// is the products' operands', as attention_forward()'s: under bf16, q, k and v are
// rounded once into compact bf16 copies, and each sequence's probabilities before P v
// (stream-ordered scratch: 2 bytes per q, k and v element, and heads x seq x seq bf16).
void attention_forward_cuda(cublasHandle_t handle, const AttentionShape& shape, const float* q, const float* k,
                            const float* v, int ld_in, float* ctx, int ld_out, float* probs,
                            GemmPrecision precision = GemmPrecision::fp32);

// As attention_backward(): dq, dk, dv (row stride ld_grad) overwritten on their heads'
// columns, dk and dv summed over the query heads of a kv head in head order (GEMMs with
// beta = 1, no atomics: deterministic). Allocates heads x seq x seq floats of scratch
// (stream-ordered, cudaMallocAsync) for the score gradients of one sequence at a time;
// under bf16 also bf16 copies of dctx, q, k, v and of one sequence's P and dS.
void attention_backward_cuda(cublasHandle_t handle, const AttentionShape& shape, const float* dctx, int ld_out,
                             const float* q, const float* k, const float* v, int ld_in, const float* probs,
                             float* dq, float* dk, float* dv, int ld_grad,
                             GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels::cuda
