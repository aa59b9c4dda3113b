// Dense GEMM on row-major device matrices through cuBLAS, with gemm.hpp's meaning:
// C = alpha * op(A) * op(B) + beta * C. (cuBLAS is column-major: the call computes
// C^T = op(B)^T op(A)^T, which is the same memory.) Also the bf16 and fp16 rounding of fp32
// device arrays that mixed-precision GEMMs read (here and in the grouped, attention and expert
// FFN kernels).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device.hpp"
#include "kernels/gemm.hpp"

namespace moesim::kernels::cuda {

// Runs on the handle's stream. FP32 compute (CUBLAS_COMPUTE_32F); TF32 only if the
// caller set it on the handle. fp32 A, B and C; with precision bf16 (fp16), A and B are
// first rounded to bf16 (fp16: round_to_fp16_cuda, CUDA_R_16F) into stream-ordered scratch
// and cuBLAS multiplies the 16-bit operands with fp32 accumulation, reading and writing the fp32 C: CPU gemm()'s
// semantics, to the order of summation.
void gemm_cuda(cublasHandle_t handle, Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
               const float* a, const float* b, float beta, float* c,
               GemmPrecision precision = GemmPrecision::fp32);

// The same on device arrays of `type` (CUDA_R_32F, CUDA_R_16F or CUDA_R_16BF) with fp32
// accumulation (CUBLAS_COMPUTE_32F), C of the same type. k > 0.
void gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, Trans trans_a, Trans trans_b, int m, int n, int k,
                     float alpha, const void* a, const void* b, float beta, void* c);

// dst (rows x cols, contiguous) = src (rows x cols, row stride ld >= cols) rounded to
// bf16 with __float2bfloat16_rn (to nearest, ties to even: kernels::round_to_bf16's
// values, torch's .to(torch.bfloat16)); on `stream`.
void round_to_bf16_cuda(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, __nv_bfloat16* dst,
                        cudaStream_t stream);

// The same to IEEE half with __float2half_rn (to nearest, ties to even, overflow to
// infinity: kernels::round_to_fp16's values, torch's .to(torch.float16)).
void round_to_fp16_cuda(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, __half* dst,
                        cudaStream_t stream);

// A 16-bit copy (bf16 or fp16, as `precision` says) of an fp32 device matrix (rows x cols,
// row stride ld; or n contiguous elements) in stream-ordered scratch, made on
// construction, freed on destruction. data() addresses its 2-byte elements; type() is
// what cuBLAS reads them as (CUDA_R_16BF or CUDA_R_16F).
class HalfCopy {
public:
    HalfCopy(const float* src, std::size_t rows, std::size_t cols, std::size_t ld, GemmPrecision precision,
             cudaStream_t stream);
    HalfCopy(const float* src, std::size_t n, GemmPrecision precision, cudaStream_t stream)
        : HalfCopy(src, 1, n, n, precision, stream) {}
    const std::uint16_t* data() const { return scratch_.as<std::uint16_t>(); }
    cudaDataType_t type() const { return type_; }

private:
    StreamScratch scratch_;
    cudaDataType_t type_;
};

}  // namespace moesim::kernels::cuda
