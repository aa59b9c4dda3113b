// Element-wise and reduction kernels of the executor's CUDA backend; see
// cuda_backend_kernels.hpp. Reductions accumulate in double over fixed grids, so a run
// repeats bit for bit on one GPU.
#include "src/executor/cuda_backend_kernels.hpp"

#include <algorithm>

#include "kernels/cuda/device.hpp"

namespace moesim::exec::cuda_detail {
namespace {

using kernels::cuda::check;

constexpr int kThreads = 256;
// Rows one block of the column sum covers (at least; more when rows would need more than
// 65535 blocks in y).
constexpr int kColumnSumChunk = 128;

unsigned grid_for(std::size_t n) {
  const std::size_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::size_t>(blocks, 1, 65535));
}

int column_chunk(int rows) { return std::max(kColumnSumChunk, (rows + 65534) / 65535); }
int column_chunks(int rows) { return rows <= 0 ? 1 : (rows + column_chunk(rows) - 1) / column_chunk(rows); }

__global__ void add_bias_kernel(float* y, const float* b, std::size_t n, int cols) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] += b[i % static_cast<std::size_t>(cols)];
}

// Block (32, 8) sums 32 columns over `chunk` rows: partial[blockIdx.y][c].
__global__ void column_partial_kernel(const float* m, int rows, int cols, int chunk, double* partial) {
  __shared__ double s[8][33];
  const int c = static_cast<int>(blockIdx.x) * 32 + static_cast<int>(threadIdx.x);
  const int first = static_cast<int>(blockIdx.y) * chunk;
  const int last = min(rows, first + chunk);
  double acc = 0;
  if (c < cols)
    for (int r = first + static_cast<int>(threadIdx.y); r < last; r += 8)
      acc += m[static_cast<std::size_t>(r) * cols + c];
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double sum = 0;
    for (int j = 0; j < 8; ++j) sum += s[j][threadIdx.x];
    partial[static_cast<std::size_t>(blockIdx.y) * cols + c] = sum;
  }
}

__global__ void column_finish_kernel(const double* partial, int chunks, int cols, bool accumulate, float* out) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= cols) return;
  double sum = 0;
  for (int j = 0; j < chunks; ++j) sum += partial[static_cast<std::size_t>(j) * cols + c];
  out[c] = static_cast<float>(sum) + (accumulate ? out[c] : 0.0f);
}

__global__ void scatter_rows_kernel(const float* dy, int d, const int* source, float* dx) {
  const std::size_t r = blockIdx.x;
  const int t = source[r];
  if (t < 0) return;
  float* dst = dx + static_cast<std::size_t>(t) * d;
  const float* src = dy + r * d;
  for (int i = static_cast<int>(threadIdx.x); i < d; i += static_cast<int>(blockDim.x)) dst[i] = src[i];
}

__global__ void map_indices_kernel(const int* in, const int* table, std::size_t n, int* out) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = in[i] >= 0 ? table[in[i]] : in[i];
}

__global__ void axpy_kernel(float alpha, const float* x, float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] += alpha * x[i];
}

__global__ void scale_kernel(float alpha, float* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

// Sum over the block of kThreads doubles held in `s`, tree order (fixed); s[0] gets it.
__device__ void block_tree_sum(double* s) {
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
  }
  __syncthreads();
}

__global__ void square_partial_kernel(const float* x, std::size_t n, double* partial) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    acc += v * v;
  }
  s[threadIdx.x] = acc;
  block_tree_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

__global__ void square_finish_kernel(const double* partial, int blocks, double* result) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int i = static_cast<int>(threadIdx.x); i < blocks; i += static_cast<int>(blockDim.x)) acc += partial[i];
  s[threadIdx.x] = acc;
  block_tree_sum(s);
  if (threadIdx.x == 0) *result = s[0];
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace

void add_bias(float* y, const float* b, int rows, int cols, cudaStream_t stream) {
  const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, b, n, cols);
  check_launch("add_bias_kernel");
}

std::size_t column_sum_scratch(int rows, int cols) {
  return static_cast<std::size_t>(column_chunks(rows)) * static_cast<std::size_t>(std::max(cols, 1));
}

void column_sum(const float* m, int rows, int cols, bool accumulate, double* scratch, float* out,
                cudaStream_t stream) {
  if (cols <= 0) return;
  const int chunks = column_chunks(rows);
  if (rows > 0) {
    const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(chunks));
    column_partial_kernel<<<grid, dim3(32, 8), 0, stream>>>(m, rows, cols, column_chunk(rows), scratch);
    check_launch("column_partial_kernel");
  } else {
    check(cudaMemsetAsync(scratch, 0, static_cast<std::size_t>(cols) * sizeof(double), stream), "cudaMemsetAsync");
  }
  column_finish_kernel<<<static_cast<unsigned>((cols + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      scratch, chunks, cols, accumulate, out);
  check_launch("column_finish_kernel");
}

void scatter_rows(const float* dy, int d, const int* source, int rows, float* dx, cudaStream_t stream) {
  if (rows <= 0 || d <= 0) return;
  const int threads = std::min(1024, (d + 31) / 32 * 32);
  scatter_rows_kernel<<<static_cast<unsigned>(rows), static_cast<unsigned>(threads), 0, stream>>>(dy, d, source, dx);
  check_launch("scatter_rows_kernel");
}

void map_indices(const int* in, const int* table, std::size_t n, int* out, cudaStream_t stream) {
  if (n == 0) return;
  map_indices_kernel<<<grid_for(n), kThreads, 0, stream>>>(in, table, n, out);
  check_launch("map_indices_kernel");
}

void axpy(float alpha, const float* x, float* y, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  axpy_kernel<<<grid_for(n), kThreads, 0, stream>>>(alpha, x, y, n);
  check_launch("axpy_kernel");
}

void scale(float alpha, float* x, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(alpha, x, n);
  check_launch("scale_kernel");
}

void sum_squares(const float* x, std::size_t n, double* partial, double* result, cudaStream_t stream) {
  square_partial_kernel<<<kSumSquaresBlocks, kThreads, 0, stream>>>(x, n, partial);
  check_launch("square_partial_kernel");
  square_finish_kernel<<<1, kThreads, 0, stream>>>(partial, kSumSquaresBlocks, result);
  check_launch("square_finish_kernel");
}

}  // namespace moesim::exec::cuda_detail
