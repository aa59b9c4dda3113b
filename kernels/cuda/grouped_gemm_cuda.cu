// Grouped GEMM on cuBLAS: each group becomes one column-major problem (see gemm_cuda.cu
// for the row-major mapping), submitted together.
#include "kernels/cuda/grouped_gemm_cuda.hpp"

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

void run_problems(cublasHandle_t handle, const std::vector<Problem>& problems, float beta,
                  cudaDataType_t type = CUDA_R_32F, GroupedAlgo algo = GroupedAlgo::GroupedBatched)
{
    if (algo == GroupedAlgo::PerGroup) {
        const float alpha = 1.0f;
        for (const Problem& p : problems) {
            check(cublasGemmEx(handle, p.op_a, p.op_b, p.m, p.n, p.k, &alpha, p.a, type, p.lda, p.b, type, p.ldb,
                               &beta, p.c, type, p.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
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
        lda.data(), b_dev, type, ldb.data(), betas.data(), c_dev, type, ldc.data(),
        static_cast<int>(count), group_size.data(), CUBLAS_COMPUTE_32F);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
        for (std::size_t i = 0; i < count; ++i) {
            check(cublasGemmEx(handle, op_a[i], op_b[i], m[i], n[i], k[i], &alpha[i], a[i], type, lda[i],
                               b[i], type, ldb[i], &betas[i], c[i], type, ldc[i],
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

}  // namespace

void grouped_gemm_cuda(cublasHandle_t handle, const GroupRows& groups, const float* x, int k,
                       const float* w, Trans trans_w, int n, float beta, float* y)
{
    check_groups(groups, "grouped_gemm_cuda");
    const std::size_t w_size = static_cast<std::size_t>(n) * k;
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
                                   trans_w == Trans::Yes ? k : n, k, n, w + g * w_size,
                                   x + static_cast<std::size_t>(groups.offsets[g]) * k, y_g});
    }
    run_problems(handle, problems, beta);
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
    run_problems(handle, problems, beta, type, algo);
}

void grouped_gemm_weight_grad_cuda(cublasHandle_t handle, const GroupRows& groups, const float* dy,
                                   int n, const float* x, int k, Trans trans_w, float beta, float* dw)
{
    check_groups(groups, "grouped_gemm_weight_grad_cuda");
    const std::size_t w_size = static_cast<std::size_t>(n) * k;
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
        const float* dy_g = dy + static_cast<std::size_t>(groups.offsets[g]) * n;
        const float* x_g = x + static_cast<std::size_t>(groups.offsets[g]) * k;
        if (trans_w == Trans::Yes) {
            // dw_g (n x k) row-major = dy_g^T x_g; column-major dw_g^T (k x n) = x_g^T dy_g.
            problems.push_back(Problem{CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, k, n, k, x_g, dy_g, dw_g});
        } else {
            // dw_g (k x n) row-major = x_g^T dy_g; column-major dw_g^T (n x k) = dy_g^T x_g.
            problems.push_back(Problem{CUBLAS_OP_N, CUBLAS_OP_T, n, k, m, n, k, n, dy_g, x_g, dw_g});
        }
    }
    run_problems(handle, problems, beta);
}

}  // namespace moesim::kernels::cuda
