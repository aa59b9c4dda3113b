// Strict loader and writer for profiles/*.json; every figure is {"value", "source"}.
#include "src/profile/profile.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>

#include "src/core/json_reader.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {
namespace {

// A figure with a unit ("312TFLOPS") or, when dim is empty, a fraction in (0, 1].
// `max_fraction` above 1 is for measured kernels, which can beat a ceiling when their
// working set stays in cache.
Figure read_figure(ObjectReader& parent, std::string_view key, std::optional<Dimension> dim, double max_fraction = 1.0) {
  ObjectReader r = parent.object(key);
  Figure f;
  f.value = dim ? r.quantity("value", *dim) : r.number("value", 1e-6, max_fraction);
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

constexpr std::pair<std::string_view, OpBound> kBounds[] = {{"flops", OpBound::flops}, {"bytes", OpBound::bytes}};

// A table of numeric rows under `columns`; the last columns are fixed, the leading ones
// free names (the shape's dimensions).
std::vector<std::vector<double>> read_table(ObjectReader& r, const std::vector<std::string>& tail,
                                            std::vector<std::string>& leading) {
  const nlohmann::json& cols = r.raw("columns");
  std::string expected = "expected a list of column names ending with";
  for (const auto& t : tail) expected += " \"" + t + "\"";
  if (!cols.is_array() || cols.size() < tail.size()) r.fail("columns", expected);
  std::vector<std::string> names;
  for (const auto& c : cols) {
    if (!c.is_string()) r.fail("columns", expected);
    names.push_back(c.get<std::string>());
  }
  if (!std::equal(tail.begin(), tail.end(), names.end() - static_cast<std::ptrdiff_t>(tail.size())))
    r.fail("columns", expected);
  leading.assign(names.begin(), names.end() - static_cast<std::ptrdiff_t>(tail.size()));
  const nlohmann::json& table = r.raw("table");
  const std::string row_expected = "expected rows of " + std::to_string(names.size()) + " non-negative numbers";
  if (!table.is_array() || table.empty()) r.fail("table", row_expected);
  std::vector<std::vector<double>> rows;
  for (const auto& row : table) {
    if (!row.is_array() || row.size() != names.size()) r.fail("table", row_expected + ", got " + describe_value(row));
    std::vector<double> values;
    for (const auto& v : row) {
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
        r.fail("table", row_expected + ", got " + describe_value(row));
      values.push_back(v.get<double>());
    }
    if (values.back() <= 0) r.fail("table", "expected a positive time in the last column, got " + describe_value(row));
    rows.push_back(std::move(values));
  }
  return rows;
}

OpProfile read_op(ObjectReader& parent, const std::string& name) {
  ObjectReader r = parent.object(name);
  OpProfile op;
  op.bound = r.choice("bound", kBounds);
  op.dtype = r.choice("dtype", names::kDTypes);
  op.efficiency = read_figure(r, "efficiency", std::nullopt, 64.0);
  op.overhead = read_figure(r, "overhead", Dimension::seconds);
  std::vector<std::string> dims;
  for (const auto& row : read_table(r, {"flops", "bytes", "seconds"}, dims)) {
    OpSample s;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      if (row[i] != std::floor(row[i]) || row[i] > 9e15) r.fail("table", "expected whole numbers for " + dims[i]);
      s.shape[dims[i]] = static_cast<std::int64_t>(row[i]);
    }
    s.flops = row[dims.size()];
    s.bytes = row[dims.size() + 1];
    s.seconds = row[dims.size() + 2];
    op.samples.push_back(std::move(s));
  }
  r.finish();
  return op;
}

CollectiveProfile read_collective(const nlohmann::json& doc, const std::string& file, const std::string& path) {
  ObjectReader r(doc, file, path);
  CollectiveProfile c;
  c.op = r.string("op");
  c.transport = r.string("transport");
  c.ranks = static_cast<int>(r.integer("ranks", 1, 1 << 20));
  c.nodes = static_cast<int>(r.integer("nodes", 1, c.ranks));
  c.alpha = read_figure(r, "alpha", Dimension::seconds);
  c.bandwidth = read_figure(r, "bandwidth", Dimension::bandwidth);
  std::vector<std::string> dims;
  for (const auto& row : read_table(r, {"bytes", "seconds"}, dims)) c.samples.push_back({row[0], row[1]});
  if (!dims.empty()) r.fail("columns", "expected [\"bytes\", \"seconds\"]");
  r.finish();
  return c;
}

// Numbers as the shortest text that reads back to the same double.
nlohmann::ordered_json number_json(double v) { return v; }

}  // namespace

const char* to_string(OpBound b) { return name_of(b, kBounds); }

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
    p.provenance.cpu = prov.string_or("cpu", "");
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
  if (peaks.has("fp8")) p.compute.fp8_peak_flops = read_figure(peaks, "fp8", Dimension::flops);
  peaks.finish();
  if (p.compute.peak_flops.empty()) c.fail("peak_flops", "expected at least one of fp32, fp16, bf16");
  p.compute.memory_bandwidth = read_figure(c, "memory_bandwidth", Dimension::bandwidth);
  p.compute.memory_efficiency = read_figure(c, "memory_efficiency", std::nullopt);
  p.compute.attention_efficiency = read_figure(c, "attention_efficiency", std::nullopt);
  if (c.has("fp8_gemm_efficiency")) p.compute.fp8_gemm_efficiency = read_figure(c, "fp8_gemm_efficiency", std::nullopt);
  if ((p.compute.fp8_peak_flops.value > 0) != (p.compute.fp8_gemm_efficiency.value > 0))
    c.fail("fp8_gemm_efficiency", "expected together with peak_flops.fp8 (both or neither)");
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
  if (c.has("ops")) {
    const nlohmann::json& ops = c.raw("ops");
    if (!ops.is_object()) c.fail("ops", "expected an object of measured kernels by name");
    ObjectReader o = c.object("ops");
    for (const auto& [name, _] : ops.items()) {
      OpProfile op = read_op(o, name);
      if (!p.compute.peak_flops.contains(op.dtype) && op.bound == OpBound::flops)
        o.fail(name, std::string("expected a dtype with a peak in compute.peak_flops, got ") + to_string(op.dtype));
      p.compute.ops[name] = std::move(op);
    }
    o.finish();
  }
  c.finish();

  ObjectReader m = r.object("communication");
  p.comm.base_latency = read_figure(m, "base_latency", Dimension::seconds);
  p.comm.nvlink_step_latency = read_figure(m, "nvlink_step_latency", Dimension::seconds);
  p.comm.pcie_step_latency = read_figure(m, "pcie_step_latency", Dimension::seconds);
  p.comm.net_step_latency = read_figure(m, "net_step_latency", Dimension::seconds);
  p.comm.nvlink_efficiency = read_figure(m, "nvlink_efficiency", std::nullopt);
  p.comm.pcie_efficiency = read_figure(m, "pcie_efficiency", std::nullopt);
  p.comm.net_efficiency = read_figure(m, "net_efficiency", std::nullopt);
  if (m.has("collectives")) {
    const nlohmann::json& list = m.raw("collectives");
    if (!list.is_array()) m.fail("collectives", "expected a list of measured collectives");
    for (std::size_t i = 0; i < list.size(); ++i)
      p.comm.collectives.push_back(
          read_collective(list[i], file, m.field("collectives") + "[" + std::to_string(i) + "]"));
  }
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
    prov["cpu"] = p.provenance.cpu;
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
  const Figure& fp8 = p.compute.fp8_peak_flops;
  if (fp8.value > 0) peaks["fp8"] = figure_json(fp8, with_unit(fp8.value, "FLOPS"));
  c["peak_flops"] = peaks;
  c["memory_bandwidth"] = figure_json(p.compute.memory_bandwidth, with_unit(p.compute.memory_bandwidth.value, "Bps"));
  c["memory_efficiency"] = fraction_json(p.compute.memory_efficiency);
  c["attention_efficiency"] = fraction_json(p.compute.attention_efficiency);
  if (fp8.value > 0) c["fp8_gemm_efficiency"] = fraction_json(p.compute.fp8_gemm_efficiency);
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
  if (!p.compute.ops.empty()) {
    nlohmann::ordered_json ops;
    for (const auto& [name, op] : p.compute.ops) {
      nlohmann::ordered_json cols = nlohmann::ordered_json::array(), op_rows = nlohmann::ordered_json::array();
      if (!op.samples.empty())
        for (const auto& [dim, _] : op.samples.front().shape) cols.push_back(dim);
      for (const char* t : {"flops", "bytes", "seconds"}) cols.push_back(t);
      for (const OpSample& s : op.samples) {
        nlohmann::ordered_json row = nlohmann::ordered_json::array();
        for (const auto& [_, v] : s.shape) row.push_back(v);
        row.push_back(number_json(s.flops));
        row.push_back(number_json(s.bytes));
        row.push_back(number_json(s.seconds));
        op_rows.push_back(std::move(row));
      }
      ops[name] = {{"bound", to_string(op.bound)},
                   {"dtype", to_string(op.dtype)},
                   {"efficiency", fraction_json(op.efficiency)},
                   {"overhead", figure_json(op.overhead, with_unit(op.overhead.value, "s"))},
                   {"columns", cols},
                   {"table", op_rows}};
    }
    c["ops"] = ops;
  }
  j["compute"] = c;
  auto lat = [](const Figure& f) { return figure_json(f, with_unit(f.value, "s")); };
  j["communication"] = {{"base_latency", lat(p.comm.base_latency)},
                        {"nvlink_step_latency", lat(p.comm.nvlink_step_latency)},
                        {"pcie_step_latency", lat(p.comm.pcie_step_latency)},
                        {"net_step_latency", lat(p.comm.net_step_latency)},
                        {"nvlink_efficiency", fraction_json(p.comm.nvlink_efficiency)},
                        {"pcie_efficiency", fraction_json(p.comm.pcie_efficiency)},
                        {"net_efficiency", fraction_json(p.comm.net_efficiency)}};
  if (!p.comm.collectives.empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const CollectiveProfile& cp : p.comm.collectives) {
      nlohmann::ordered_json points = nlohmann::ordered_json::array();
      for (const CollectivePoint& s : cp.samples) points.push_back({number_json(s.bytes), number_json(s.seconds)});
      list.push_back({{"op", cp.op},
                      {"transport", cp.transport},
                      {"ranks", cp.ranks},
                      {"nodes", cp.nodes},
                      {"alpha", lat(cp.alpha)},
                      {"bandwidth", figure_json(cp.bandwidth, with_unit(cp.bandwidth.value, "Bps"))},
                      {"columns", {"bytes", "seconds"}},
                      {"table", points}});
    }
    j["communication"]["collectives"] = list;
  }
  return j;
}

std::string default_profile_path(const ClusterSpec& cluster, const std::string& profiles_dir) {
  return profiles_dir + "/" + to_string(cluster.gpu) + ".json";
}

}  // namespace moesim
