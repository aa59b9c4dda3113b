// Strict loader and writer for cluster JSON files, with the fabric's consistency checks.
#include "src/cluster/cluster_spec.hpp"

#include <set>

#include "src/core/json_reader.hpp"

namespace moesim {
namespace {

constexpr std::pair<std::string_view, GpuModel> kGpus[] = {
    {"v100-sxm2-16gb", GpuModel::v100_sxm2_16gb}, {"v100-sxm2-32gb", GpuModel::v100_sxm2_32gb},
    {"a100-sxm4-40gb", GpuModel::a100_sxm4_40gb}, {"a100-sxm4-80gb", GpuModel::a100_sxm4_80gb},
    {"a100-pcie-40gb", GpuModel::a100_pcie_40gb}, {"a100-pcie-80gb", GpuModel::a100_pcie_80gb},
    {"h100-sxm5-80gb", GpuModel::h100_sxm5_80gb}, {"h100-pcie-80gb", GpuModel::h100_pcie_80gb},
    {"h200-sxm-141gb", GpuModel::h200_sxm_141gb}, {"cpu", GpuModel::cpu}};

constexpr std::pair<std::string_view, IntraFabric> kFabrics[] = {
    {"nvswitch", IntraFabric::nvswitch},
    {"hybrid_cube_mesh", IntraFabric::hybrid_cube_mesh},
    {"pcie", IntraFabric::pcie}};

std::vector<NvlinkPair> read_peers(ObjectReader& r, int gpus) {
  const nlohmann::json& v = r.raw("nvlink_peers");
  std::string expected = "expected a list of [gpu_a, gpu_b, links] triples with GPUs in [0, " +
                         std::to_string(gpus - 1) + "] and links >= 1";
  if (!v.is_array() || v.empty()) r.fail("nvlink_peers", expected);
  std::vector<NvlinkPair> out;
  std::set<std::pair<int, int>> seen;
  for (const auto& t : v) {
    if (!t.is_array() || t.size() != 3) r.fail("nvlink_peers", expected + ", got " + describe_value(t));
    for (const auto& x : t)
      if (!x.is_number_integer()) r.fail("nvlink_peers", expected + ", got " + describe_value(t));
    std::int64_t a = t[0].get<std::int64_t>(), b = t[1].get<std::int64_t>(), n = t[2].get<std::int64_t>();
    if (a < 0 || b < 0 || a >= gpus || b >= gpus || a == b || n < 1 || n > 64)
      r.fail("nvlink_peers", expected + ", got " + describe_value(t));
    auto key = std::minmax(a, b);
    if (!seen.emplace(static_cast<int>(key.first), static_cast<int>(key.second)).second)
      r.fail("nvlink_peers", "expected each GPU pair once, got " + describe_value(t) + " twice");
    out.push_back({static_cast<int>(a), static_cast<int>(b), static_cast<int>(n)});
  }
  return out;
}

}  // namespace

ClusterSpec cluster_from_json(const nlohmann::json& doc, const std::string& file) {
  ObjectReader r(doc, file);
  ClusterSpec c;
  c.name = r.string("name");
  c.source = r.string_or("source", "");
  c.gpu = r.choice("gpu", kGpus);
  c.gpu_memory_bytes = r.quantity("gpu_memory", Dimension::bytes);
  if (c.gpu_memory_bytes <= 0) r.fail("gpu_memory", "expected a positive size");
  c.gpus_per_node = static_cast<int>(r.integer("gpus_per_node", 1, 1024));
  c.nodes = static_cast<int>(r.integer("nodes", 1, 65536));
  c.fabric = r.choice("fabric", kFabrics);
  c.pcie_bandwidth = r.quantity("pcie_bandwidth", Dimension::bandwidth);
  c.pcie_latency = r.has("pcie_latency") ? r.quantity("pcie_latency", Dimension::seconds) : 0.0;
  if (c.pcie_bandwidth <= 0) r.fail("pcie_bandwidth", "expected a positive bandwidth");
  if (c.fabric != IntraFabric::pcie) {
    c.nvlink_bandwidth = r.quantity("nvlink_bandwidth", Dimension::bandwidth);
    c.nvlink_latency = r.has("nvlink_latency") ? r.quantity("nvlink_latency", Dimension::seconds) : 0.0;
    if (c.nvlink_bandwidth <= 0) r.fail("nvlink_bandwidth", "expected a positive bandwidth");
  }
  if (c.fabric == IntraFabric::hybrid_cube_mesh) c.nvlink_peers = read_peers(r, c.gpus_per_node);
  c.nics_per_node = static_cast<int>(r.integer_or("nics_per_node", 0, 0, 64));
  if (c.nics_per_node > 0) {
    c.nic_bandwidth = r.quantity("nic_bandwidth", Dimension::bandwidth);
    c.nic_latency = r.has("nic_latency") ? r.quantity("nic_latency", Dimension::seconds) : 0.0;
    if (c.nic_bandwidth <= 0) r.fail("nic_bandwidth", "expected a positive bandwidth");
  } else if (c.nodes > 1) {
    r.fail("nics_per_node", "expected at least 1 NIC per node for " + std::to_string(c.nodes) + " nodes");
  }
  r.finish();
  return c;
}

ClusterSpec load_cluster(const std::string& path) { return cluster_from_json(read_json_file(path), path); }

namespace {
std::string gbps(double bytes_per_s) { return std::to_string(bytes_per_s / 1e9) + "GBps"; }
std::string us(double s) { return std::to_string(s * 1e6) + "us"; }
}  // namespace

nlohmann::ordered_json cluster_to_json(const ClusterSpec& c) {
  nlohmann::ordered_json j;
  j["name"] = c.name;
  if (!c.source.empty()) j["source"] = c.source;
  j["gpu"] = to_string(c.gpu);
  j["gpu_memory"] = std::to_string(c.gpu_memory_bytes) + "B";
  j["gpus_per_node"] = c.gpus_per_node;
  j["nodes"] = c.nodes;
  j["fabric"] = to_string(c.fabric);
  j["pcie_bandwidth"] = gbps(c.pcie_bandwidth);
  j["pcie_latency"] = us(c.pcie_latency);
  if (c.fabric != IntraFabric::pcie) {
    j["nvlink_bandwidth"] = gbps(c.nvlink_bandwidth);
    j["nvlink_latency"] = us(c.nvlink_latency);
  }
  if (c.fabric == IntraFabric::hybrid_cube_mesh) {
    auto peers = nlohmann::ordered_json::array();
    for (const NvlinkPair& p : c.nvlink_peers) peers.push_back({p.a, p.b, p.links});
    j["nvlink_peers"] = peers;
  }
  if (c.nics_per_node > 0) {
    j["nics_per_node"] = c.nics_per_node;
    j["nic_bandwidth"] = gbps(c.nic_bandwidth);
    j["nic_latency"] = us(c.nic_latency);
  }
  return j;
}

const char* to_string(GpuModel g) { return name_of(g, kGpus); }
const std::pair<std::string_view, GpuModel> (&gpu_model_names())[10] { return kGpus; }
const char* to_string(IntraFabric f) { return name_of(f, kFabrics); }

}  // namespace moesim
