// CUDA causal self-attention. Per sequence b, the GEMMs of all heads are one cuBLAS
// strided-batched call: head h's q block sits head_dim columns after head h - 1's, so the
// heads are a batch with stride head_dim (row stride ld). With grouped-query attention the
// query heads h = g * group + r (g = kv head) are batched over g for each r, so that q
// strides by group * head_dim while k and v stride by head_dim. The masked softmax and its
// backward use one warp per score row. Under bf16 (fp16) the GEMMs read bf16 (fp16) copies of their
// operands (compact: row stride = the block's width) and write fp32.
#include "kernels/cuda/attention_cuda.hpp"

#include <cfloat>
#include <cstddef>
#include <optional>

#include "kernels/check.hpp"
#include "kernels/cuda/gemm_cuda.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::check_launch;
using detail::grid_for;

constexpr int kWarpsPerBlock = 8;

// In place over rows of seq scores (row r is query r % seq): keys j <= i get
// exp(s - max) / sum, keys j > i get 0.
__global__ void causal_softmax_kernel(float* scores, std::size_t rows, int seq)
{
    const std::size_t row = static_cast<std::size_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (row >= rows) {
        return;  // the whole warp leaves together, so the shuffles below stay full-mask
    }
    const int lane = static_cast<int>(threadIdx.x % 32);
    const int i = static_cast<int>(row % static_cast<std::size_t>(seq));
    float* x = scores + row * seq;
    float m = -FLT_MAX;
    for (int j = lane; j <= i; j += 32) {
        m = fmaxf(m, x[j]);
    }
    m = detail::warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j <= i; j += 32) {
        const float e = expf(x[j] - m);
        x[j] = e;
        sum += e;
    }
    sum = detail::warp_sum(sum);
    for (int j = lane; j < seq; j += 32) {
        x[j] = j <= i ? x[j] / sum : 0.0f;
    }
}

// In place: dP (rows of seq) becomes dS = P * (dP - sum_j P dP) * scale, 0 above the diagonal.
__global__ void causal_softmax_backward_kernel(const float* probs, float* grad, std::size_t rows, int seq,
                                               float scale)
{
    const std::size_t row = static_cast<std::size_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (row >= rows) {
        return;
    }
    const int lane = static_cast<int>(threadIdx.x % 32);
    const int i = static_cast<int>(row % static_cast<std::size_t>(seq));
    const float* p = probs + row * seq;
    float* g = grad + row * seq;
    float dot = 0.0f;
    for (int j = lane; j <= i; j += 32) {
        dot += p[j] * g[j];
    }
    dot = detail::warp_sum(dot);
    for (int j = lane; j < seq; j += 32) {
        g[j] = j <= i ? p[j] * (g[j] - dot) * scale : 0.0f;
    }
}

void launch_rows(bool backward, const float* probs, float* scores, std::size_t rows, int seq, float scale,
                 cudaStream_t stream)
{
    const unsigned blocks = grid_for(rows, kWarpsPerBlock);
    if (backward) {
        causal_softmax_backward_kernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(probs, scores, rows, seq,
                                                                                   scale);
        check_launch("causal_softmax_backward_kernel");
    } else {
        causal_softmax_kernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(scores, rows, seq);
        check_launch("causal_softmax_kernel");
    }
}

// A row-major matrix a GEMM reads: fp32, bf16 or fp16 elements with row stride ld.
struct Matrix {
    const void* data;
    int ld;
    cudaDataType_t type;
    // The matrix from element (row, col) on, same stride.
    Matrix at(std::size_t row, std::size_t col) const
    {
        const std::size_t bytes = type == CUDA_R_32F ? sizeof(float) : sizeof(__nv_bfloat16);
        return {static_cast<const char*>(data) + (row * static_cast<std::size_t>(ld) + col) * bytes, ld, type};
    }
};

// An fp32 matrix as the GEMMs read it: itself, or (bf16, fp16) its compact 16-bit copy of rows x
// cols, made on construction.
class Operand {
public:
    Operand(const float* x, std::size_t rows, int cols, int ld, GemmPrecision precision, cudaStream_t stream)
    {
        if (precision != GemmPrecision::fp32) {
            copy_.emplace(x, rows, static_cast<std::size_t>(cols), static_cast<std::size_t>(ld), precision, stream);
            matrix_ = {copy_->data(), cols, copy_->type()};
        } else {
            matrix_ = {x, ld, CUDA_R_32F};
        }
    }
    const Matrix& matrix() const { return matrix_; }

private:
    std::optional<HalfCopy> copy_;
    Matrix matrix_{};
};

// Row-major C_i (m x n, row stride ldc, fp32) = alpha op(A_i) op(B_i) + beta C_i for
// i < count, A_i = a + i * stride_a (elements), B_i likewise; a and b of one type.
// cuBLAS is column-major, so it computes C_i^T = op(B_i)^T op(A_i)^T on the same memory.
void gemm_batched(cublasHandle_t handle, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                  const Matrix& a, long long stride_a, const Matrix& b, long long stride_b, float beta, float* c,
                  int ldc, long long stride_c, int count)
{
    check(cublasGemmStridedBatchedEx(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b.data, b.type,
                                     b.ld, stride_b, a.data, a.type, a.ld, stride_a, &beta, c, CUDA_R_32F,
                                     ldc, stride_c, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
}

// Offset of sequence b's first row in a matrix of row stride ld.
std::size_t seq_offset(const AttentionShape& s, int b, int ld)
{
    return static_cast<std::size_t>(b) * s.seq * ld;
}

std::size_t square(const AttentionShape& s)
{
    return static_cast<std::size_t>(s.seq) * s.seq;
}

}  // namespace

void attention_forward_cuda(cublasHandle_t handle, const AttentionShape& s, const float* q, const float* k,
                            const float* v, int ld_in, float* ctx, int ld_out, float* probs,
                            GemmPrecision precision)
{
    kernels::detail::check_attention_shape(s, ld_in, ld_out, "attention_forward_cuda");
    if (s.batch == 0 || s.seq == 0) {
        return;
    }
    const cudaStream_t stream = stream_of(handle);
    const int d = s.head_dim, group = s.heads / s.kv_heads;
    const std::size_t ss = square(s), rows = static_cast<std::size_t>(s.batch) * s.seq;
    const long long q_stride = static_cast<long long>(group) * d;  // between heads g * group + r, g = 0, 1, ...
    const long long p_stride = static_cast<long long>(group) * static_cast<long long>(ss);
    const Operand Q(q, rows, s.heads * d, ld_in, precision, stream);
    const Operand K(k, rows, s.kv_heads * d, ld_in, precision, stream);
    const Operand V(v, rows, s.kv_heads * d, ld_in, precision, stream);
    for (int b = 0; b < s.batch; ++b) {
        const std::size_t row = static_cast<std::size_t>(b) * s.seq;
        for (int r = 0; r < group; ++r) {
            // S_h = scale * Q_h K_g^T
            gemm_batched(handle, false, true, s.seq, s.seq, d, s.scale, Q.matrix().at(row, static_cast<std::size_t>(r) * d),
                         q_stride, K.matrix().at(row, 0), d, 0.0f,
                         probs + (static_cast<std::size_t>(b) * s.heads + r) * ss, s.seq, p_stride, s.kv_heads);
        }
    }
    launch_rows(false, nullptr, probs, static_cast<std::size_t>(s.batch) * s.heads * s.seq, s.seq, 0.0f, stream);
    for (int b = 0; b < s.batch; ++b) {
        const std::size_t row = static_cast<std::size_t>(b) * s.seq;
        const float* p_b = probs + static_cast<std::size_t>(b) * s.heads * ss;
        const Operand P(p_b, static_cast<std::size_t>(s.heads) * s.seq, s.seq, s.seq, precision, stream);
        for (int r = 0; r < group; ++r) {
            // ctx_h = P_h V_g
            gemm_batched(handle, false, false, s.seq, d, s.seq, 1.0f,
                         P.matrix().at(static_cast<std::size_t>(r) * s.seq, 0), p_stride, V.matrix().at(row, 0), d,
                         0.0f, ctx + seq_offset(s, b, ld_out) + static_cast<std::size_t>(r) * d, ld_out, q_stride,
                         s.kv_heads);
        }
    }
}

void attention_backward_cuda(cublasHandle_t handle, const AttentionShape& s, const float* dctx, int ld_out,
                             const float* q, const float* k, const float* v, int ld_in, const float* probs,
                             float* dq, float* dk, float* dv, int ld_grad, GemmPrecision precision)
{
    const char* fn = "attention_backward_cuda";
    kernels::detail::check_attention_shape(s, ld_in, ld_out, fn);
    kernels::detail::require(ld_grad >= s.heads * s.head_dim, fn, "ld_grad must be at least heads * head_dim");
    if (s.batch == 0 || s.seq == 0) {
        return;
    }
    const cudaStream_t stream = stream_of(handle);
    const int d = s.head_dim, group = s.heads / s.kv_heads;
    const std::size_t ss = square(s), rows = static_cast<std::size_t>(s.batch) * s.seq;
    const long long q_stride = static_cast<long long>(group) * d;
    const long long p_stride = static_cast<long long>(group) * static_cast<long long>(ss);
    const Operand dC(dctx, rows, s.heads * d, ld_out, precision, stream);
    const Operand Q(q, rows, s.heads * d, ld_in, precision, stream);
    const Operand K(k, rows, s.kv_heads * d, ld_in, precision, stream);
    const Operand V(v, rows, s.kv_heads * d, ld_in, precision, stream);
    const StreamScratch scratch(static_cast<std::size_t>(s.heads) * ss * sizeof(float), stream);
    float* ds = scratch.as<float>();  // heads x seq x seq of sequence b
    const std::size_t head_rows = static_cast<std::size_t>(s.heads) * s.seq;
    for (int b = 0; b < s.batch; ++b) {
        const std::size_t row = static_cast<std::size_t>(b) * s.seq;
        const float* p_b = probs + static_cast<std::size_t>(b) * s.heads * ss;
        for (int r = 0; r < group; ++r) {
            // dP_h = dctx_h V_g^T
            gemm_batched(handle, false, true, s.seq, s.seq, d, 1.0f, dC.matrix().at(row, static_cast<std::size_t>(r) * d),
                         q_stride, V.matrix().at(row, 0), d, 0.0f, ds + r * ss, s.seq, p_stride, s.kv_heads);
        }
        launch_rows(true, p_b, ds, head_rows, s.seq, s.scale, stream);
        const Operand dS(ds, head_rows, s.seq, s.seq, precision, stream);
        const Operand P(p_b, head_rows, s.seq, s.seq, precision, stream);
        for (int r = 0; r < group; ++r) {
            const Matrix ds_r = dS.matrix().at(static_cast<std::size_t>(r) * s.seq, 0);
            // dq_h = dS_h K_g
            gemm_batched(handle, false, false, s.seq, d, s.seq, 1.0f, ds_r, p_stride, K.matrix().at(row, 0), d, 0.0f,
                         dq + seq_offset(s, b, ld_grad) + static_cast<std::size_t>(r) * d, ld_grad, q_stride,
                         s.kv_heads);
            // dk_g (+)= dS_h^T Q_h and dv_g (+)= P_h^T dctx_h: the group's heads summed in order r.
            const float beta = r == 0 ? 0.0f : 1.0f;
            gemm_batched(handle, true, false, s.seq, d, s.seq, 1.0f, ds_r, p_stride,
                         Q.matrix().at(row, static_cast<std::size_t>(r) * d), q_stride, beta,
                         dk + seq_offset(s, b, ld_grad), ld_grad, d, s.kv_heads);
            gemm_batched(handle, true, false, s.seq, d, s.seq, 1.0f,
                         P.matrix().at(static_cast<std::size_t>(r) * s.seq, 0), p_stride,
                         dC.matrix().at(row, static_cast<std::size_t>(r) * d), q_stride, beta,
                         dv + seq_offset(s, b, ld_grad), ld_grad, d, s.kv_heads);
        }
    }
}

}  // namespace moesim::kernels::cuda
