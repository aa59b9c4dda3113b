// Reading search and simulate documents into report views; see report_data.hpp.
#include "src/report/report_data.hpp"

#include <map>
#include <set>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/profiler/collective_bench.hpp"
#include "src/search/search_report.hpp"

namespace moesim {

namespace {

using nlohmann::json;

// `doc[key]` as a number, or an InputError naming the file and the field.
double number(const json& doc, const char* key, const std::string& file, const std::string& path) {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_number())
    throw InputError(file, path + key, "expected a number");
  return doc[key].get<double>();
}

const json& object(const json& doc, const char* key, const std::string& file, const std::string& path = "") {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_object())
    throw InputError(file, path + key, "expected an object");
  return doc[key];
}

std::string text(const json& doc, const char* key, const std::string& file) {
  if (!doc.contains(key) || !doc[key].is_string()) throw InputError(file, key, "expected a string");
  return doc[key].get<std::string>();
}

std::vector<std::pair<std::string, double>> breakdown_of(const json& b, const std::string& file, const std::string& path) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [group, prefix] : {std::pair{"compute_s", "compute: "}, std::pair{"exposed_comm_s", "exposed comm: "}}) {
    for (const auto& [k, v] : object(b, group, file, path).items()) {
      if (!v.is_number()) throw InputError(file, path + group + "." + k, "expected a number");
      out.emplace_back(prefix + k, v.get<double>());
    }
  }
  out.emplace_back("pipeline bubble", number(b, "bubble_s", file, path));
  out.emplace_back("optimizer step", number(b, "optimizer_s", file, path));
  return out;
}

std::string short_plan_of(const json& plan, const std::string& file, const std::string& path) {
  if (!plan.is_object()) throw InputError(file, path + "plan", "expected a plan object");
  return short_plan(plan_from_json(plan, file));
}

// A `simulate --json` result (or a search's embedded one) as a row.
ReportRow row_of_result(const json& r, const std::string& file, const std::string& path) {
  ReportRow row;
  row.source = file;
  row.iteration_s = number(r, "iteration_s", file, path);
  row.wps = number(r, "wps", file, path);
  row.mfu = number(r, "mfu", file, path);
  const json& mem = object(r, "memory", file, path);
  row.peak_memory = number(mem, "peak_per_rank_bytes", file, path + "memory.");
  row.gpu_memory = number(mem, "gpu_memory_bytes", file, path + "memory.");
  row.breakdown = breakdown_of(object(r, "breakdown", file, path), file, path + "breakdown.");
  if (r.contains("balance") && r["balance"].is_object() && r["balance"].contains("kept_per_expert")) {
    const json& b = r["balance"];
    const std::string bp = path + "balance.";
    for (const auto& [key, into] : {std::pair{"demand_per_expert", &row.demand}, std::pair{"kept_per_expert", &row.kept}}) {
      if (!b.contains(key) || !b[key].is_array()) throw InputError(file, bp + key, "expected an array of numbers");
      for (const json& x : b[key]) {
        if (!x.is_number()) throw InputError(file, bp + key, "expected an array of numbers");
        into->push_back(x.get<double>());
      }
    }
    if (row.demand.size() != row.kept.size())
      throw InputError(file, bp + "kept_per_expert", "expected as many entries as demand_per_expert");
    row.dropped_fraction = number(b, "dropped_fraction", file, bp);
    row.routing = b.contains("routing") && b["routing"].is_string() ? b["routing"].get<std::string>() : "";
  }
  return row;
}

void add_search(Report& report, const json& doc, const std::string& file) {
  ReportView view;
  view.kind = "plans";
  const std::string model = text(doc, "model", file), cluster = text(doc, "cluster", file),
                    profile = text(doc, "profile", file);
  view.title = "Plan vs plan: " + model + " on " + cluster + " (search, event tier)";
  if (!doc["ranked"].is_array()) throw InputError(file, "ranked", "expected an array");
  const json& winner_memory = object(object(object(doc, "winner", file), "result", file, "winner."), "memory", file,
                                    "winner.result.");
  const double gpu_memory = number(winner_memory, "gpu_memory_bytes", file, "winner.result.memory.");
  for (const json& r : doc["ranked"]) {
    const std::string path = "ranked[" + std::to_string(view.rows.size()) + "].";
    ReportRow row;
    row.source = file;
    row.iteration_s = number(r, "iteration_s", file, path);
    row.wps = number(r, "wps", file, path);
    row.mfu = number(r, "mfu", file, path);
    row.peak_memory = number(r, "peak_memory_bytes", file, path);
    row.gpu_memory = gpu_memory;
    row.breakdown = breakdown_of(object(r, "breakdown", file, path), file, path + "breakdown.");
    row.plan = short_plan_of(r["plan"], file, path);
    row.key = "#" + std::to_string(view.rows.size() + 1);
    row.label = row.key + " " + row.plan;
    view.rows.push_back(std::move(row));
  }
  if (doc.contains("baselines") && doc["baselines"].is_array()) {
    for (std::size_t i = 0; i < doc["baselines"].size(); ++i) {
      const json& b = doc["baselines"][i];
      const std::string path = "baselines[" + std::to_string(i) + "].";
      ReportRow row = row_of_result(object(b, "result", file, path), file, path + "result.");
      row.plan = short_plan_of(b["plan"], file, path);
      row.key = "baseline " + std::to_string(i + 1);
      row.label = "baseline " + text(b, "name", file) + ": " + row.plan;
      view.rows.push_back(std::move(row));
    }
  }
  for (ReportRow& row : view.rows) row.model = model, row.cluster = cluster, row.profile = profile;
  report.views.push_back(std::move(view));
}

// The profile's tables against its own fits: measured kernels, else the published GEMM
// table, and measured collectives with nccl-tests' bus bandwidth.
ProfileView profile_view(const Profile& p, const std::string& file) {
  ProfileView view;
  view.source = file;
  view.title = "Profile " + p.name + " (" + p.provenance.kind + ")";
  for (const auto& [name, op] : p.compute.ops) {
    const bool flops = op.bound == OpBound::flops;
    const double ceiling = flops ? p.peak(op.dtype) : p.compute.memory_bandwidth.value;
    for (const OpSample& s : op.samples) {
      const double work = flops ? s.flops : s.bytes, unit = flops ? 1e12 : 1e9;
      if (!(work > 0 && s.seconds > 0)) continue;  // an empty expert's call: no rate, and no place on a log axis
      const double fit = work / (op.efficiency.value * ceiling) + op.overhead.value;
      view.points.push_back({flops ? "gemm" : "memory", name, work, work / s.seconds / unit, work / fit / unit});
    }
  }
  if (p.compute.ops.empty()) {
    const double peak = p.peak(p.compute.gemm_dtype);
    for (const GemmSample& g : p.compute.gemm_table) {
      const double f = 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
      const double fit = f / (p.compute.gemm_efficiency.value * peak) + p.compute.kernel_overhead.value;
      view.points.push_back({"gemm", std::string("gemm table (") + to_string(p.compute.gemm_dtype) + ")", f,
                             f / g.seconds / 1e12, f / fit / 1e12});
    }
  }
  for (const CollectiveProfile& c : p.comm.collectives) {
    const std::string series = c.op + ", " + std::to_string(c.ranks) + " ranks (" + c.transport + ")";
    double factor = 0;
    for (BenchCollective op : {BenchCollective::all_reduce, BenchCollective::all_gather, BenchCollective::reduce_scatter,
                               BenchCollective::all_to_all, BenchCollective::all_to_all_v})
      if (c.op == to_string(op)) factor = bus_factor(op, c.ranks);
    for (const CollectivePoint& s : c.samples) {
      if (!(s.bytes > 0 && s.seconds > 0)) continue;
      const double fit = c.alpha.value + s.bytes / c.bandwidth.value;
      view.points.push_back({"collective", series, s.bytes, s.bytes / s.seconds * factor / 1e9, s.bytes / fit * factor / 1e9});
    }
  }
  return view;
}

}  // namespace

Report build_report(const std::vector<std::string>& files) {
  Report report;
  std::vector<ReportRow> simulated;
  for (const std::string& file : files) {
    const json doc = read_json_file(file);
    report.inputs.push_back(file);
    if (doc.is_object() && doc.contains("space") && doc.contains("ranked")) {
      add_search(report, doc, file);
    } else if (doc.is_object() && doc.contains("mode") && doc.contains("iteration_s") && doc.contains("plan")) {
      ReportRow row = row_of_result(doc, file, "");
      row.model = text(doc, "model", file);
      row.cluster = text(doc, "cluster", file);
      row.profile = text(doc, "profile", file);
      row.plan = short_plan_of(doc["plan"], file, "");
      simulated.push_back(std::move(row));
    } else if (doc.is_object() && doc.contains("provenance") && doc.contains("compute")) {
      report.profiles.push_back(profile_view(profile_from_json(doc, file), file));
    } else {
      throw InputError(file, "", "expected the output of `moesim search --json` or `moesim simulate --json`, or a profile");
    }
  }
  // Simulate results by model: one plan on several clusters compares GPUs; otherwise plans.
  std::map<std::string, std::vector<ReportRow>> by_model;
  for (ReportRow& row : simulated) by_model[row.model].push_back(std::move(row));
  for (auto& [model, rows] : by_model) {
    std::set<std::string> plans, clusters, routings;
    for (const ReportRow& r : rows)
      plans.insert(r.plan), clusters.insert(r.cluster + "/" + r.profile), routings.insert(r.routing);
    ReportView view;
    view.kind = plans.size() == 1 && clusters.size() > 1    ? "gpus"
                : plans.size() == 1 && routings.size() > 1 ? "routings"
                                                           : "plans";
    if (view.kind == "gpus")
      view.title = "GPU vs GPU: " + model + ", plan " + *plans.begin();
    else if (view.kind == "routings")
      view.title = "Routing vs routing: " + model + ", plan " + *plans.begin() + " on " + rows[0].cluster;
    else
      view.title = "Plan vs plan: " + model + (clusters.size() == 1 ? " on " + rows[0].cluster : "");
    for (ReportRow& r : rows) {
      const std::string n = std::to_string(view.rows.size() + 1);
      if (view.kind == "gpus") {
        r.label = r.cluster + " (" + r.profile + ")";
        r.key = r.cluster;
      } else if (view.kind == "routings") {
        r.label = "routing " + r.routing;
        r.key = r.routing;
      } else {
        r.label = r.plan + (clusters.size() > 1 ? " on " + r.cluster : "");
        r.key = "#" + n;
      }
      view.rows.push_back(std::move(r));
    }
    report.views.push_back(std::move(view));
  }
  // Two rows with one label would be drawn as one bar: name their files.
  for (ReportView& view : report.views) {
    std::map<std::string, int> seen;
    for (const ReportRow& r : view.rows) ++seen[r.label];
    for (ReportRow& r : view.rows)
      if (seen[r.label] > 1) r.label += " [" + r.source + "]";
  }
  report.title = "moesim report";
  if (report.views.size() + report.profiles.size() == 1)
    report.title += ": " + (report.views.empty() ? report.profiles[0].title : report.views[0].title);
  return report;
}

}  // namespace moesim
