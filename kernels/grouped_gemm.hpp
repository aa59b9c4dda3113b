// Grouped GEMM on CPU (Eigen): one GEMM per expert over that expert's rows of the
// expert-ordered buffer that permute() fills, every expert with its own weight matrix.
// This is how expert FFNs run without padding each expert to the same row count.
#pragma once

#include <span>

#include "kernels/gemm.hpp"

namespace moesim::kernels {

// Group g covers rows [offsets[g], offsets[g] + counts[g]) of a buffer with `rows` rows
// (Dispatch::offsets and Dispatch::counts); groups = counts.size(), offsets has at least
// that many entries. Rows outside every group are neither read nor written.
struct GroupRows {
    std::span<const int> offsets;
    std::span<const int> counts;
    int rows = 0;
};

// y_g (count_g x n) = x_g (count_g x k) * op(w_g) + beta * y_g for every group g.
// w holds groups matrices back to back, each stored n x k (trans_w = Yes, the nn.Linear
// layout) or k x n (No). x is rows x k, y rows x n. `precision`: the operands' (gemm.hpp).
void grouped_gemm(const GroupRows& groups, std::span<const float> x, int k,
                  std::span<const float> w, Trans trans_w, int n, float beta, std::span<float> y,
                  GemmPrecision precision = GemmPrecision::fp32);

// Weight gradient of grouped_gemm: dw_g = dy_g^T x_g (stored n x k, trans_w = Yes) or
// x_g^T dy_g (k x n, No), plus beta * dw_g. A group without rows gets beta * dw_g.
void grouped_gemm_weight_grad(const GroupRows& groups, std::span<const float> dy, int n,
                              std::span<const float> x, int k, Trans trans_w, float beta,
                              std::span<float> dw, GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels
