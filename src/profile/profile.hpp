// A calibration profile (profiles/*.json): the figures the compute and communication
// models use for one GPU and its fabric, each with where it came from: `public` with a
// citation, or `measured` by `moesim profile` with host, date and versions. No number of
// the cost model is a literal in code; they all come from here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"

namespace moesim {

// One number and its source.
struct Figure {
  double value = 0;
  std::string source;
};

// A measured (or published) GEMM: C[m x n] = A[m x k] B[k x n] in `seconds`.
struct GemmSample {
  std::int64_t m = 0, n = 0, k = 0;
  double seconds = 0;
};

// One measured point of a profiled kernel: its shape (named dimensions), the work it
// does and the median of repeated timed runs.
struct OpSample {
  std::map<std::string, std::int64_t> shape;
  double flops = 0;
  double bytes = 0;    // the fewest bytes the kernel must move (inputs once, outputs once)
  double seconds = 0;
};

// What limits a kernel, and so what its efficiency is a fraction of.
enum class OpBound { flops, bytes };

// A kernel measured by `moesim profile`: its table and the fit
// t = work / (efficiency * ceiling) + overhead, where work and ceiling are FLOPs and the
// dtype's peak (bound flops) or bytes and the memory bandwidth (bound bytes).
struct OpProfile {
  OpBound bound = OpBound::flops;
  DType dtype = DType::fp32;
  std::vector<OpSample> samples;
  Figure efficiency;
  Figure overhead;  // seconds per launch
};

struct ComputeProfile {
  std::map<DType, Figure> peak_flops;  // dense tensor-core peak per dtype (fp32: non-tensor)
  Figure memory_bandwidth;             // bytes/s, HBM peak
  Figure memory_efficiency;            // achieved fraction of memory_bandwidth for streaming kernels
  DType gemm_dtype = DType::fp16;      // the dtype the GEMM table and fit were taken in
  std::vector<GemmSample> gemm_table;  // published or measured points
  std::string gemm_table_source;
  Figure gemm_efficiency;  // fitted: large-GEMM fraction of peak
  Figure kernel_overhead;  // fitted: fixed seconds per kernel (launch, tail, sync)
  Figure attention_efficiency;  // fused attention's fraction of peak
  // FP8 tensor-core peak and large-GEMM efficiency (Hopper); value 0 when the GPU has none.
  Figure fp8_peak_flops, fp8_gemm_efficiency;
  // Measured kernels by name ("gemm_bf16", "grouped_gemm_bf16", "permute_fp32", ...);
  // empty in public profiles.
  std::map<std::string, OpProfile> ops;
};

// One measured collective at one size (nccl-tests' conventions for bytes and busbw).
struct CollectivePoint {
  double bytes = 0;
  double seconds = 0;
};

// A collective measured over `ranks` ranks (`nodes` nodes) with `transport` ("mpi" or
// "nccl"), and its alpha-beta fit t = alpha + bytes / bandwidth (algorithm bandwidth).
struct CollectiveProfile {
  std::string op;  // all_reduce, all_gather, reduce_scatter, all_to_all, all_to_all_v
  std::string transport;
  int ranks = 1;
  int nodes = 1;
  std::vector<CollectivePoint> samples;
  Figure alpha;      // seconds
  Figure bandwidth;  // bytes/s of `bytes` (algbw), large messages
};

// Collective costs after NCCL's tuning model: per-step latency by link class, and the
// fraction of a link's bandwidth a collective achieves (bus bandwidth / link bandwidth).
struct CommProfile {
  Figure base_latency;            // seconds per collective launch
  Figure nvlink_step_latency;     // seconds per ring step over NVLink/NVSwitch
  Figure pcie_step_latency;       // seconds per step over PCIe
  Figure net_step_latency;        // seconds per step across nodes
  Figure nvlink_efficiency;       // fraction of NVLink bandwidth achieved
  Figure pcie_efficiency;
  Figure net_efficiency;          // fraction of NIC bandwidth achieved
  std::vector<CollectiveProfile> collectives;  // measured; empty in public profiles
};

struct Provenance {
  std::string kind;      // "public" or "measured"
  std::string citation;  // public: where the figures come from
  std::string host, date, cpu, gpu, driver, cuda, nccl, mpi;  // measured
};

struct Profile {
  std::string name;
  GpuModel device = GpuModel::a100_sxm4_40gb;
  Provenance provenance;
  ComputeProfile compute;
  CommProfile comm;

  double peak(DType d) const;  // FLOP/s for GEMMs in `d`
};

const char* to_string(OpBound b);

Profile profile_from_json(const nlohmann::json& doc, const std::string& file);
Profile load_profile(const std::string& path);
nlohmann::ordered_json profile_to_json(const Profile& profile);

// The shipped profile for a cluster's GPU: profiles/<gpu>.json under `profiles_dir`.
std::string default_profile_path(const ClusterSpec& cluster, const std::string& profiles_dir = "profiles");

}  // namespace moesim
