// The shapes `moesim profile` measures: the kernels of the given model's layers over a
// range of token counts sized for the device, and the work (FLOPs, fewest bytes) each
// point does. The same accounting serves the fits and the held-out checks.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/profile/profile.hpp"

namespace moesim {

// One measurement: kernel name ("gemm", "grouped_gemm", "permute", ...), the dtype of its
// operands and its named dimensions.
struct OpPoint {
  std::string kernel;
  DType dtype = DType::fp32;
  std::map<std::string, std::int64_t> shape;
};

// The key of a kernel in a profile's compute.ops: "gemm_bf16".
std::string op_key(const std::string& kernel, DType dtype);

// What limits the kernel: GEMMs are FLOP-bound, everything else moves bytes.
OpBound bound_of(const std::string& kernel);

// FLOPs and fewest bytes of the point (inputs read once, outputs written once).
struct Work {
  double flops = 0;
  double bytes = 0;
};
Work work_of(const OpPoint& p);

struct GridOptions {
  std::string device = "cpu";             // "cpu" sizes the grid for one core, "cuda" for a GPU
  std::vector<DType> gemm_dtypes{DType::fp32};
  bool quick = false;
};

// Every point to measure for `model`.
std::vector<OpPoint> profile_grid(const ModelSpec& model, const GridOptions& options);

// Points of the same kernels at shapes the grid does not hold, between its measured
// sizes: what a held-out check predicts and then measures.
std::vector<OpPoint> held_out_grid(const ModelSpec& model, const GridOptions& options);

}  // namespace moesim
