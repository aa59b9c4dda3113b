// Assembly of a measured profile; see measured_profile.hpp.
#include "src/profiler/measured_profile.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "src/profile/fit.hpp"

namespace moesim {
namespace {

std::string fmt(const char* f, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// The largest copy's bandwidth (bytes read + written per second).
std::pair<double, double> copy_bandwidth(const std::vector<MeasuredPoint>& compute) {
  double bytes = 0, bw = 0;
  for (const MeasuredPoint& m : compute)
    if (m.point.kernel == "copy" && m.sample.bytes >= bytes) {
      bytes = m.sample.bytes;
      bw = m.sample.bytes / m.sample.seconds;
    }
  if (bw <= 0) throw std::runtime_error("profile: no copy was measured, so no memory bandwidth");
  return {bw, bytes / 2};
}

void take_gemm_figures(Profile& p, DType dtype, const std::string& how) {
  const auto it = p.compute.ops.find(std::string("gemm_") + to_string(dtype));
  if (it == p.compute.ops.end()) throw std::runtime_error("profile: no GEMM was measured");
  p.compute.gemm_dtype = dtype;
  p.compute.gemm_table.clear();
  for (const OpSample& s : it->second.samples)
    p.compute.gemm_table.push_back({s.shape.at("m"), s.shape.at("n"), s.shape.at("k"), s.seconds});
  p.compute.gemm_table_source = how + ": " + it->first + " of compute.ops";
  p.compute.gemm_efficiency = {std::min(1.0, it->second.efficiency.value), it->second.efficiency.source};
  p.compute.kernel_overhead = it->second.overhead;
}

}  // namespace

std::optional<GpuModel> gpu_model_of(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H100")) return has("PCIe") ? GpuModel::h100_pcie_80gb : GpuModel::h100_sxm5_80gb;
  if (has("A100")) return has("80GB") ? GpuModel::a100_sxm4_80gb : GpuModel::a100_sxm4_40gb;
  if (has("V100")) return has("32GB") ? GpuModel::v100_sxm2_32gb : GpuModel::v100_sxm2_16gb;
  return std::nullopt;
}

std::vector<CollectiveProfile> fit_collectives(const std::vector<CollectiveSample>& samples, int nodes,
                                               const std::string& transport) {
  std::map<std::pair<std::string, int>, std::vector<const CollectiveSample*>> series;
  for (const CollectiveSample& s : samples) series[{to_string(s.op), s.ranks}].push_back(&s);
  std::vector<CollectiveProfile> out;
  for (const auto& [key, points] : series) {
    std::vector<double> bytes, seconds;
    CollectiveProfile c;
    c.op = key.first;
    c.ranks = key.second;
    c.nodes = nodes;
    c.transport = transport;
    for (const CollectiveSample* s : points) {
      bytes.push_back(s->bytes);
      seconds.push_back(s->seconds);
      c.samples.push_back({s->bytes, s->seconds});
    }
    const AlphaBetaFit fit = fit_alpha_beta(bytes, seconds);
    const std::string how = "measured (" + transport + ", " + std::to_string(c.ranks) +
                            " ranks): t = alpha + bytes/bandwidth over " + std::to_string(points.size()) +
                            " sizes, relative least squares";
    c.alpha = {std::max(0.0, fit.alpha), how + ", " + residual_summary(fit.relative_residuals)};
    c.bandwidth = {fit.bandwidth, how};
    out.push_back(std::move(c));
  }
  return out;
}

Profile make_measured_profile(const MeasuredRun& run, const std::optional<Profile>& base) {
  Profile p;
  const auto [copy_bw, copy_bytes] = copy_bandwidth(run.compute);
  const std::string copy_how = fmt("measured: copy of %.0f MiB, bytes read + written", copy_bytes / (1 << 20));
  if (run.backend == "cuda") {
    if (!base) throw std::runtime_error("profile: a GPU profile needs the GPU's public profile as its base");
    p = *base;
    p.compute.ops = fit_ops(run.compute, p, "measured");
    p.compute.memory_efficiency = {std::min(1.0, copy_bw / p.compute.memory_bandwidth.value),
                                   copy_how + fmt(" (%.0f GB/s) over memory_bandwidth", copy_bw / 1e9)};
    take_gemm_figures(p, DType::bf16, "measured");
  } else {
    p.device = GpuModel::cpu;
    // One core's ceilings are not on a datasheet: the copy bandwidth and the asymptotic
    // rate of the GEMM fit (so the GEMM efficiency is 1 by construction).
    p.compute.memory_bandwidth = {copy_bw, copy_how};
    p.compute.memory_efficiency = {1.0, "by definition: memory_bandwidth is the measured copy bandwidth"};
    p.compute.peak_flops[DType::fp32] = {1.0, ""};  // provisional, for the first fit
    std::vector<MeasuredPoint> gemms;
    for (const MeasuredPoint& m : run.compute)
      if (m.point.kernel == "gemm") gemms.push_back(m);
    if (gemms.empty()) throw std::runtime_error("profile: no GEMM was measured");
    const double rate = fit_ops(gemms, p, "").at("gemm_fp32").efficiency.value;
    p.compute.peak_flops[DType::fp32] = {rate, "measured: asymptotic rate of the fp32 GEMM fit (one core, Eigen)"};
    p.compute.ops = fit_ops(run.compute, p, "measured");
    take_gemm_figures(p, DType::fp32, "measured");
    p.compute.attention_efficiency = {p.compute.gemm_efficiency.value,
                                      "[inferred] the fp32 GEMM efficiency: attention is not profiled on CPU"};
  }
  p.name = run.name;
  p.provenance = run.provenance;
  p.comm.collectives = fit_collectives(run.collectives, run.nodes, run.transport);
  if (run.backend != "cuda") {
    // CPU ranks talk through MPI, not NVLink or NICs: the measured collectives carry the
    // costs; the link-class figures only stand in for collectives not measured.
    double alpha = 0;
    for (const CollectiveProfile& c : p.comm.collectives)
      if (c.op == "all_reduce") alpha = c.alpha.value;
    const std::string why = "[inferred] CPU ranks: the measured collectives below carry the costs";
    p.comm.base_latency = {alpha, alpha > 0 ? "measured: the all_reduce fit's alpha" : why};
    p.comm.nvlink_step_latency = p.comm.pcie_step_latency = p.comm.net_step_latency = {0.0, why};
    p.comm.nvlink_efficiency = p.comm.pcie_efficiency = p.comm.net_efficiency = {1.0, why};
  }
  return p;
}

}  // namespace moesim
