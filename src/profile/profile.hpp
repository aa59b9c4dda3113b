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
};

struct Provenance {
  std::string kind;      // "public" or "measured"
  std::string citation;  // public: where the figures come from
  std::string host, date, gpu, driver, cuda, nccl, mpi;  // measured
};

struct Profile {
  std::string name;
  GpuModel device = GpuModel::a100_sxm4_40gb;
  Provenance provenance;
  ComputeProfile compute;
  CommProfile comm;

  double peak(DType d) const;  // FLOP/s for GEMMs in `d`
};

Profile profile_from_json(const nlohmann::json& doc, const std::string& file);
Profile load_profile(const std::string& path);
nlohmann::ordered_json profile_to_json(const Profile& profile);

// The shipped profile for a cluster's GPU: profiles/<gpu>.json under `profiles_dir`.
std::string default_profile_path(const ClusterSpec& cluster, const std::string& profiles_dir = "profiles");

}  // namespace moesim
