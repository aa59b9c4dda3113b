// The few element-wise and reduction kernels the executor's CUDA backend needs beside
// kernels/cuda/: bias add, column sums, row scatter, an index map, axpy, scale and a sum of squares.
// Internal to src/executor/ (cuda_backend.cpp uses them); built only with CUDA. Every
// launcher runs on `stream`, checks the launch and throws kernels::cuda::CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace moesim::exec::cuda_detail {

// y (rows x cols) += b broadcast over rows.
void add_bias(float* y, const float* b, int rows, int cols, cudaStream_t stream);

// out[c] = sum over rows of m[r][c], in double and in a fixed order (deterministic, as the
// CPU's double column sums), plus out[c] when `accumulate`. `scratch` holds
// column_sum_scratch(rows, cols) doubles of device memory.
std::size_t column_sum_scratch(int rows, int cols);
void column_sum(const float* m, int rows, int cols, bool accumulate, double* scratch, float* out,
                cudaStream_t stream);

// dx[source[r]] = dy[r] for r < rows, rows of d floats; rows with source < 0 are skipped.
void scatter_rows(const float* dy, int d, const int* source, int rows, float* dx, cudaStream_t stream);

// out[i] = table[in[i]] where in[i] >= 0, else in[i] (n entries): expert ids to slots.
void map_indices(const int* in, const int* table, std::size_t n, int* out, cudaStream_t stream);

// y += alpha x; x *= alpha (n elements).
void axpy(float alpha, const float* x, float* y, std::size_t n, cudaStream_t stream);
void scale(float alpha, float* x, std::size_t n, cudaStream_t stream);

// *result (one device double) = sum of x[i]^2, accumulated in double over a fixed grid
// (deterministic). `partial` holds kSumSquaresBlocks doubles of device memory.
constexpr int kSumSquaresBlocks = 512;
void sum_squares(const float* x, std::size_t n, double* partial, double* result, cudaStream_t stream);

}  // namespace moesim::exec::cuda_detail
