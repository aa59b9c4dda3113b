// Dense fp32 GEMM on row-major matrices through Eigen: C = alpha * op(A) * op(B) + beta * C.
// The one place the CPU kernels multiply matrices, so the layout convention lives here.
#pragma once

#include <span>

namespace moesim::kernels {

enum class Trans { No, Yes };

// op(A) is m x k: A is stored m x k (No) or k x m (Yes); op(B) is k x n: B is stored
// k x n (No) or n x k (Yes); C is m x n. All contiguous row-major. With beta == 0, C is
// not read (it may hold NaN). Throws std::invalid_argument on a size mismatch.
void gemm(Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
          std::span<const float> a, std::span<const float> b, float beta, std::span<float> c);

}  // namespace moesim::kernels
