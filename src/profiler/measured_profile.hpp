// Turns what the profiler measured into a profile: compute kernels fitted against their
// ceilings, collectives fitted alpha-beta, and provenance. On a GPU the public profile of
// that GPU supplies the ceilings (datasheet peaks and bandwidth) and every figure the run
// could not measure, each keeping its citation; on a CPU the ceilings are measured too.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "src/profile/profile.hpp"
#include "src/profiler/collective_bench.hpp"
#include "src/profiler/compute_profiler.hpp"

namespace moesim {

struct MeasuredRun {
  std::string name;
  std::string backend;  // "cpu" or "cuda"
  std::vector<MeasuredPoint> compute;
  std::vector<CollectiveSample> collectives;
  int nodes = 1;           // nodes the collectives spanned
  std::string transport;   // "mpi" or "nccl"
  Provenance provenance;   // kind "measured", filled by the caller
};

// `base`: the GPU's public profile (required for cuda, unused for cpu).
Profile make_measured_profile(const MeasuredRun& run, const std::optional<Profile>& base);

// Alpha-beta fits of every (op, ranks) series, relative least squares.
std::vector<CollectiveProfile> fit_collectives(const std::vector<CollectiveSample>& samples, int nodes,
                                               const std::string& transport);

// The shipped public profile for a CUDA device name ("NVIDIA H100 80GB HBM3" ->
// h100-sxm5-80gb), or nullopt when none matches.
std::optional<GpuModel> gpu_model_of(const std::string& device_name);

}  // namespace moesim
