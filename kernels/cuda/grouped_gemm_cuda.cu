// Grouped GEMM on cuBLAS: each group becomes one column-major problem (see gemm_cuda.cu
// for the row-major mapping), submitted together.
#include "kernels/cuda/grouped_gemm_cuda.hpp"

#include <optional>
#include <string>
#include <vector>

#include "kernels/check.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/gemm_cuda.hpp"

namespace moesim::kernels::cuda {

namespace {

// One column-major problem: C (m x n, ldc) = opA(A) opB(B) with alpha = 1.
struct Problem {
    cublasOperation_t op_a, op_b;
    int m, n, k, lda, ldb, ldc;
    const void* a;
    const void* b;
    void* c;
};

// A and B of `type`, C of `c_type` (the same, except bf16 or fp16 operands into fp32 outputs).
void run_problems(cublasHandle_t handle, const std::vector<Problem>& problems, float beta, cudaDataType_t type,
                  cudaDataType_t c_type, GroupedAlgo algo)
{
    if (algo == GroupedAlgo::PerGroup) {
        const float alpha = 1.0f;
        for (const Problem& p : problems) {
            check(cublasGemmEx(handle, p.op_a, p.op_b, p.m, p.n, p.k, &alpha, p.a, type, p.lda, p.b, type, p.ldb,
                               &beta, p.c, c_type, p.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublasGemmEx (per group)");
        }
        return;
    }
    if (problems.empty()) {
        return;
    }
    const std::size_t count = problems.size();
    std::vector<cublasOperation_t> op_a(count), op_b(count);
    std::vector<int> m(count), n(count), k(count), lda(count), ldb(count), ldc(count), group_size(count, 1);
    std::vector<float> alpha(count, 1.0f), betas(count, beta);
    std::vector<const void*> a(count), b(count);
    std::vector<void*> c(count);
    for (std::size_t i = 0; i < count; ++i) {
        const Problem& p = problems[i];
        op_a[i] = p.op_a;
        op_b[i] = p.op_b;
        m[i] = p.m;
        n[i] = p.n;
        k[i] = p.k;
        lda[i] = p.lda;
        ldb[i] = p.ldb;
        ldc[i] = p.ldc;
        a[i] = p.a;
        b[i] = p.b;
        c[i] = p.c;
    }
    cudaStream_t stream = nullptr;
    check(cublasGetStream(handle, &stream), "cublasGetStream");
    // The pointer arrays live in device memory; sizes, strides and scalars on the host.
    void* arrays = nullptr;
    check(cudaMallocAsync(&arrays, 3 * count * sizeof(void*), stream), "cudaMallocAsync");
    void** a_dev = static_cast<void**>(arrays);
    void** b_dev = a_dev + count;
    void** c_dev = b_dev + count;
    check(cudaMemcpyAsync(a_dev, a.data(), count * sizeof(void*), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(b_dev, b.data(), count * sizeof(void*), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(c_dev, c.data(), count * sizeof(void*), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    const cublasStatus_t status = cublasGemmGroupedBatchedEx(
        handle, op_a.data(), op_b.data(), m.data(), n.data(), k.data(), alpha.data(), a_dev, type,
        lda.data(), b_dev, type, ldb.data(), betas.data(), c_dev, c_type, ldc.data(),
        static_cast<int>(count), group_size.data(), CUBLAS_COMPUTE_32F);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
        for (std::size_t i = 0; i < count; ++i) {
            check(cublasGemmEx(handle, op_a[i], op_b[i], m[i], n[i], k[i], &alpha[i], a[i], type, lda[i],
                               b[i], type, ldb[i], &betas[i], c[i], c_type, ldc[i],
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublasGemmEx (grouped fallback)");
        }
    } else {
        check(status, "cublasGemmGroupedBatchedEx");
    }
    check(cudaFreeAsync(arrays, stream), "cudaFreeAsync");
}

void check_groups(const GroupRows& g, const char* fn)
{
    kernels::detail::require(g.offsets.size() >= g.counts.size(), fn, "offsets has fewer entries than counts");
    for (std::size_t i = 0; i < g.counts.size(); ++i) {
        kernels::detail::require(g.counts[i] >= 0 && g.offsets[i] >= 0 && g.offsets[i] + g.counts[i] <= g.rows,
                                 fn, "group " + std::to_string(i) + " lies outside the buffer's rows");
    }
}

// Two fp32 device operands as a grouped call reads them: themselves, or (bf16, fp16)
// copies rounded once, addressed by fp32 element offsets either way.
class Operands {
public:
    Operands(const float* a, std::size_t a_size, const float* b, std::size_t b_size, GemmPrecision precision,
             cublasHandle_t handle)
        : a_(a), b_(b)
    {
        if (precision != GemmPrecision::fp32) {
            const cudaStream_t stream = stream_of(handle);
            a16_.emplace(a, a_size, precision, stream);
            b16_.emplace(b, b_size, precision, stream);
        }
    }
    const void* a(std::size_t offset) const { return a16_ ? static_cast<const void*>(a16_->data() + offset) : a_ + offset; }
    const void* b(std::size_t offset) const { return b16_ ? static_cast<const void*>(b16_->data() + offset) : b_ + offset; }
    void run(cublasHandle_t handle, const std::vector<Problem>& problems, float beta) const
    {
        if (a16_) {
            run_problems(handle, problems, beta, a16_->type(), CUDA_R_32F, GroupedAlgo::PerGroup);
        } else {
            run_problems(handle, problems, beta, CUDA_R_32F, CUDA_R_32F, GroupedAlgo::GroupedBatched);
        }
    }

private:
    const float* a_;
    const float* b_;
    std::optional<HalfCopy> a16_, b16_;
};

}  // namespace

void grouped_gemm_cuda(cublasHandle_t handle, const GroupRows& groups, const float* x, int k,
                       const float* w, Trans trans_w, int n, float beta, float* y, GemmPrecision precision)
{
    check_groups(groups, "grouped_gemm_cuda");
    const std::size_t w_size = static_cast<std::size_t>(n) * k;
    const Operands ops(x, static_cast<std::size_t>(groups.rows) * k, w, groups.counts.size() * w_size,
                       k > 0 ? precision : GemmPrecision::fp32, handle);
    std::vector<Problem> problems;
    for (std::size_t g = 0; g < groups.counts.size(); ++g) {
        const int m = groups.counts[g];
        if (m == 0 || n == 0) {
            continue;
        }
        float* y_g = y + static_cast<std::size_t>(groups.offsets[g]) * n;
        if (k == 0) {
            gemm_cuda(handle, Trans::No, trans_w, m, n, 0, 1.0f, nullptr, nullptr, beta, y_g);
            continue;
        }
        // Column-major: y_g^T (n x m) = op(w_g)^T x_g^T.
        problems.push_back(Problem{trans_w == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k,
                                   trans_w == Trans::Yes ? k : n, k, n, ops.b(g * w_size),
                                   ops.a(static_cast<std::size_t>(groups.offsets[g]) * k), y_g});
    }
    ops.run(handle, problems, beta);
}

void grouped_gemm_cuda_typed(cublasHandle_t handle, cudaDataType_t type, const GroupRows& groups, const void* x,
                             int k, const void* w, Trans trans_w, int n, float beta, void* y, GroupedAlgo algo)
{
    check_groups(groups, "grouped_gemm_cuda_typed");
    kernels::detail::require(k > 0, "grouped_gemm_cuda_typed", "k must be > 0");
    const std::size_t e = type == CUDA_R_32F ? 4 : 2;
    const auto* xb = static_cast<const char*>(x);
    const auto* wb = static_cast<const char*>(w);
    auto* yb = static_cast<char*>(y);
    const std::size_t w_size = static_cast<std::size_t>(n) * k;
    std::vector<Problem> problems;
    for (std::size_t g = 0; g < groups.counts.size(); ++g) {
        const int m = groups.counts[g];
        if (m == 0 || n == 0) {
            continue;
        }
        const std::size_t row = static_cast<std::size_t>(groups.offsets[g]);
        problems.push_back(Problem{trans_w == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k,
                                   trans_w == Trans::Yes ? k : n, k, n, wb + g * w_size * e, xb + row * k * e,
                                   yb + row * n * e});
    }
    run_problems(handle, problems, beta, type, type, algo);
}

void grouped_gemm_weight_grad_cuda(cublasHandle_t handle, const GroupRows& groups, const float* dy,
                                   int n, const float* x, int k, Trans trans_w, float beta, float* dw,
                                   GemmPrecision precision)
{
    check_groups(groups, "grouped_gemm_weight_grad_cuda");
    const std::size_t w_size = static_cast<std::size_t>(n) * k;
    const std::size_t rows = static_cast<std::size_t>(groups.rows);
    const Operands ops(dy, rows * n, x, rows * k, n > 0 && k > 0 ? precision : GemmPrecision::fp32, handle);
    std::vector<Problem> problems;
    for (std::size_t g = 0; g < groups.counts.size(); ++g) {
        const int m = groups.counts[g];
        float* dw_g = dw + g * w_size;
        if (n == 0 || k == 0) {
            continue;
        }
        if (m == 0) {  // empty group: dw_g = beta * dw_g
            gemm_cuda(handle, Trans::No, Trans::No, n, k, 0, 1.0f, nullptr, nullptr, beta, dw_g);
            continue;
        }
        const void* dy_g = ops.a(static_cast<std::size_t>(groups.offsets[g]) * n);
        const void* x_g = ops.b(static_cast<std::size_t>(groups.offsets[g]) * k);
        if (trans_w == Trans::Yes) {
            // dw_g (n x k) row-major = dy_g^T x_g; column-major dw_g^T (k x n) = x_g^T dy_g.
            problems.push_back(Problem{CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, k, n, k, x_g, dy_g, dw_g});
        } else {
            // dw_g (k x n) row-major = x_g^T dy_g; column-major dw_g^T (n x k) = dy_g^T x_g.
            problems.push_back(Problem{CUBLAS_OP_N, CUBLAS_OP_T, n, k, m, n, k, n, dy_g, x_g, dw_g});
        }
    }
    ops.run(handle, problems, beta);
}

}  // namespace moesim::kernels::cuda
