// ClusterSpec: the GPUs, nodes and fabrics a plan runs on, as plain data loaded from
// configs/clusters/*.json. Every bandwidth and latency is a config value with a source;
// topology.hpp turns a spec into the graph the lowering routes over.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim {

// The GPU models moesim knows by name; the name selects a profile, capacities come
// from the cluster file.
enum class GpuModel {
  v100_sxm2_16gb, v100_sxm2_32gb,
  a100_sxm4_40gb, a100_sxm4_80gb, a100_pcie_40gb, a100_pcie_80gb,
  h100_sxm5_80gb, h100_pcie_80gb, h200_sxm_141gb,
  cpu,  // CPU ranks of the executor on a host (profiles/cpu-*.json)
};

enum class IntraFabric {
  nvswitch,          // every GPU has link_bandwidth to a non-blocking switch
  hybrid_cube_mesh,  // DGX-1: NVLink pairs from `nvlink_peers`, the rest over PCIe/host
  pcie,              // every GPU on a PCIe switch/host bridge
};

// One NVLink neighbour entry of a hybrid cube-mesh: GPU `a` and GPU `b` joined by `links` links.
struct NvlinkPair {
  int a = 0;
  int b = 0;
  int links = 0;
};

// Latencies are optional (0 = not charged by the fabric): per-hop protocol latencies
// belong to the communication model in profiles/, which knows NCCL's per-protocol figures.
struct ClusterSpec {
  std::string name;
  std::string source;
  GpuModel gpu = GpuModel::a100_sxm4_40gb;
  double gpu_memory_bytes = 0;  // usable device memory per GPU
  int gpus_per_node = 1;
  int nodes = 1;

  IntraFabric fabric = IntraFabric::nvswitch;
  double nvlink_bandwidth = 0;  // bytes/s per direction: per GPU (nvswitch) or per link (cube-mesh)
  double nvlink_latency = 0;    // seconds per hop
  std::vector<NvlinkPair> nvlink_peers;  // hybrid_cube_mesh only
  double pcie_bandwidth = 0;    // bytes/s per direction, GPU to its PCIe switch / host
  double pcie_latency = 0;

  int nics_per_node = 0;      // 0 = single node only
  double nic_bandwidth = 0;   // bytes/s per direction per NIC
  double nic_latency = 0;     // seconds, NIC to NIC through the network

  int total_gpus() const { return gpus_per_node * nodes; }
};

ClusterSpec cluster_from_json(const nlohmann::json& doc, const std::string& file);
ClusterSpec load_cluster(const std::string& path);
nlohmann::ordered_json cluster_to_json(const ClusterSpec& cluster);

const char* to_string(GpuModel g);
// The name table of GpuModel ("a100-sxm4-40gb", ...) for readers of other files.
const std::pair<std::string_view, GpuModel> (&gpu_model_names())[10];
const char* to_string(IntraFabric f);

}  // namespace moesim
