// Strict loader and writer for profiles/*.json; every figure is {"value", "source"}.
#include "src/profile/profile.hpp"

#include <charconv>
#include <cmath>
#include <optional>

#include "src/core/json_reader.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {
namespace {

// A figure with a unit ("312TFLOPS") or, when dim is empty, a fraction in (0, 1].
Figure read_figure(ObjectReader& parent, std::string_view key, std::optional<Dimension> dim) {
  ObjectReader r = parent.object(key);
  Figure f;
  f.value = dim ? r.quantity("value", *dim) : r.number("value", 1e-6, 1.0);
  f.source = r.string("source");
  if (f.source.empty()) r.fail("source", "expected where the figure came from");
  r.finish();
  return f;
}

nlohmann::ordered_json figure_json(const Figure& f, const std::string& value) {
  return {{"value", value}, {"source", f.source}};
}
nlohmann::ordered_json fraction_json(const Figure& f) { return {{"value", f.value}, {"source", f.source}}; }

// Base units with the shortest text that reads back to the same double, so a written
// profile loads to exactly the figures it was written from.
std::string with_unit(double v, const char* unit) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::string(buf, end) + unit;
}

}  // namespace

double Profile::peak(DType d) const {
  auto it = compute.peak_flops.find(d);
  return it == compute.peak_flops.end() ? 0.0 : it->second.value;
}

Profile profile_from_json(const nlohmann::json& doc, const std::string& file) {
  ObjectReader r(doc, file);
  Profile p;
  p.name = r.string("name");
  p.device = r.choice("device", gpu_model_names());

  ObjectReader prov = r.object("provenance");
  p.provenance.kind = prov.string("kind");
  if (p.provenance.kind == "public") {
    p.provenance.citation = prov.string("citation");
  } else if (p.provenance.kind == "measured") {
    p.provenance.host = prov.string("host");
    p.provenance.date = prov.string("date");
    p.provenance.gpu = prov.string_or("gpu", "");
    p.provenance.driver = prov.string_or("driver", "");
    p.provenance.cuda = prov.string_or("cuda", "");
    p.provenance.nccl = prov.string_or("nccl", "");
    p.provenance.mpi = prov.string_or("mpi", "");
  } else {
    prov.fail("kind", "expected \"public\" or \"measured\", got \"" + p.provenance.kind + "\"");
  }
  prov.finish();

  ObjectReader c = r.object("compute");
  ObjectReader peaks = c.object("peak_flops");
  for (const auto& [name, dtype] : names::kDTypes)
    if (peaks.has(name)) p.compute.peak_flops[dtype] = read_figure(peaks, name, Dimension::flops);
  peaks.finish();
  if (p.compute.peak_flops.empty()) c.fail("peak_flops", "expected at least one of fp32, fp16, bf16");
  p.compute.memory_bandwidth = read_figure(c, "memory_bandwidth", Dimension::bandwidth);
  p.compute.memory_efficiency = read_figure(c, "memory_efficiency", std::nullopt);
  p.compute.attention_efficiency = read_figure(c, "attention_efficiency", std::nullopt);
  ObjectReader g = c.object("gemm");
  p.compute.gemm_dtype = g.choice("dtype", names::kDTypes);
  if (!p.compute.peak_flops.contains(p.compute.gemm_dtype))
    g.fail("dtype", std::string("expected a dtype with a peak in compute.peak_flops, got ") + to_string(p.compute.gemm_dtype));
  p.compute.gemm_table_source = g.string("source");
  const nlohmann::json& table = g.raw("table");
  const std::string row_expected = "expected rows [m, n, k, \"achieved rate\" (e.g. \"253.7TFLOPS\")]";
  if (!table.is_array()) g.fail("table", row_expected);
  for (const auto& row : table) {
    if (!row.is_array() || row.size() != 4 || !row[0].is_number_integer() || !row[1].is_number_integer() ||
        !row[2].is_number_integer() || !row[3].is_string())
      g.fail("table", row_expected + ", got " + describe_value(row));
    GemmSample s{row[0].get<std::int64_t>(), row[1].get<std::int64_t>(), row[2].get<std::int64_t>(), 0.0};
    auto rate = parse_quantity(row[3].get<std::string>(), Dimension::flops);
    if (s.m < 1 || s.n < 1 || s.k < 1 || s.m > (INT64_C(1) << 30) || s.n > (INT64_C(1) << 30) ||
        s.k > (INT64_C(1) << 30) || !rate || *rate <= 0)
      g.fail("table", row_expected + ", got " + describe_value(row));
    s.seconds = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) / *rate;
    p.compute.gemm_table.push_back(s);
  }
  p.compute.gemm_efficiency = read_figure(g, "efficiency", std::nullopt);
  p.compute.kernel_overhead = read_figure(g, "kernel_overhead", Dimension::seconds);
  g.finish();
  c.finish();

  ObjectReader m = r.object("communication");
  p.comm.base_latency = read_figure(m, "base_latency", Dimension::seconds);
  p.comm.nvlink_step_latency = read_figure(m, "nvlink_step_latency", Dimension::seconds);
  p.comm.pcie_step_latency = read_figure(m, "pcie_step_latency", Dimension::seconds);
  p.comm.net_step_latency = read_figure(m, "net_step_latency", Dimension::seconds);
  p.comm.nvlink_efficiency = read_figure(m, "nvlink_efficiency", std::nullopt);
  p.comm.pcie_efficiency = read_figure(m, "pcie_efficiency", std::nullopt);
  p.comm.net_efficiency = read_figure(m, "net_efficiency", std::nullopt);
  m.finish();
  r.finish();
  return p;
}

Profile load_profile(const std::string& path) { return profile_from_json(read_json_file(path), path); }

nlohmann::ordered_json profile_to_json(const Profile& p) {
  nlohmann::ordered_json j;
  j["name"] = p.name;
  j["device"] = to_string(p.device);
  nlohmann::ordered_json prov{{"kind", p.provenance.kind}};
  if (p.provenance.kind == "public") {
    prov["citation"] = p.provenance.citation;
  } else {
    prov["host"] = p.provenance.host;
    prov["date"] = p.provenance.date;
    prov["gpu"] = p.provenance.gpu;
    prov["driver"] = p.provenance.driver;
    prov["cuda"] = p.provenance.cuda;
    prov["nccl"] = p.provenance.nccl;
    prov["mpi"] = p.provenance.mpi;
  }
  j["provenance"] = prov;
  nlohmann::ordered_json c;
  nlohmann::ordered_json peaks;
  for (const auto& [dtype, f] : p.compute.peak_flops) peaks[to_string(dtype)] = figure_json(f, with_unit(f.value, "FLOPS"));
  c["peak_flops"] = peaks;
  c["memory_bandwidth"] = figure_json(p.compute.memory_bandwidth, with_unit(p.compute.memory_bandwidth.value, "Bps"));
  c["memory_efficiency"] = fraction_json(p.compute.memory_efficiency);
  c["attention_efficiency"] = fraction_json(p.compute.attention_efficiency);
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const GemmSample& s : p.compute.gemm_table) {
    double rate = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) / s.seconds;
    rows.push_back({s.m, s.n, s.k, with_unit(rate, "FLOPS")});
  }
  c["gemm"] = {{"dtype", to_string(p.compute.gemm_dtype)},
               {"source", p.compute.gemm_table_source},
               {"table", rows},
               {"efficiency", fraction_json(p.compute.gemm_efficiency)},
               {"kernel_overhead", figure_json(p.compute.kernel_overhead, with_unit(p.compute.kernel_overhead.value, "s"))}};
  j["compute"] = c;
  auto lat = [](const Figure& f) { return figure_json(f, with_unit(f.value, "s")); };
  j["communication"] = {{"base_latency", lat(p.comm.base_latency)},
                        {"nvlink_step_latency", lat(p.comm.nvlink_step_latency)},
                        {"pcie_step_latency", lat(p.comm.pcie_step_latency)},
                        {"net_step_latency", lat(p.comm.net_step_latency)},
                        {"nvlink_efficiency", fraction_json(p.comm.nvlink_efficiency)},
                        {"pcie_efficiency", fraction_json(p.comm.pcie_efficiency)},
                        {"net_efficiency", fraction_json(p.comm.net_efficiency)}};
  return j;
}

std::string default_profile_path(const ClusterSpec& cluster, const std::string& profiles_dir) {
  return profiles_dir + "/" + to_string(cluster.gpu) + ".json";
}

}  // namespace moesim
