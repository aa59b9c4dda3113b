// The seam between the profiler and the device it measures (CPU through the kernels'
// references and Eigen; CUDA through cuBLAS and kernels/cuda). Each call builds inputs of
// the given shape, runs one kernel of a GPT-MoE layer repeatedly and returns the median
// seconds of one run.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/profiler/median_time.hpp"

namespace moesim {

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  virtual std::string kind() const = 0;    // "cpu" or "cuda"
  virtual std::string device() const = 0;  // "Intel(R) Xeon(R) ..." or "NVIDIA H100 80GB HBM3"
  virtual std::vector<DType> gemm_dtypes() const = 0;
  // Versions for the profile's provenance: {"driver", "cuda"} on CUDA, empty on CPU.
  virtual std::map<std::string, std::string> versions() const { return {}; }
  // The dtype every non-GEMM kernel reads and writes (the kernels are fp32 throughout).
  virtual DType stream_dtype() const { return DType::fp32; }

  // y[m x n] = x[m x k] w[n x k]^T, as a linear layer.
  virtual double gemm(int m, int n, int k, DType dtype) = 0;
  // The expert FFN GEMM: group g maps counts[g] rows of width k through its own n x k weight.
  virtual double grouped_gemm(std::span<const int> counts, int k, int n, DType dtype) = 0;
  // Dispatch (gather tokens x k choices into expert order) and combine (weighted scatter
  // back), for `tokens` tokens routed uniformly at random to k of `experts` experts.
  virtual double permute(int tokens, int d, int k, int experts) = 0;
  virtual double unpermute(int tokens, int d, int k, int experts) = 0;
  // Softmax over the gate logits, top-k, capacity and locations (fairseq's gate).
  virtual double gate(int tokens, int experts, int k) = 0;
  virtual double layer_norm(int rows, int cols) = 0;
  virtual double bias_gelu(int rows, int cols) = 0;
  virtual double cross_entropy(int rows, int classes) = 0;
  virtual double adam(std::size_t params) = 0;
  // A device-to-device copy of `bytes`: the memory bandwidth the streaming kernels are
  // measured against.
  virtual double copy(std::size_t bytes) = 0;
};

std::unique_ptr<ComputeBackend> make_cpu_backend(const TimingOptions& timing);
// Throws std::runtime_error when built without CUDA or when no GPU is visible.
std::unique_ptr<ComputeBackend> make_cuda_backend(const TimingOptions& timing);

}  // namespace moesim
