// Reading search, simulate and run --compare documents and profiles into report views; see report_data.hpp.
#include "src/report/report_data.hpp"

#include <algorithm>
#include <cmath>
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

std::string text(const json& doc, const char* key, const std::string& file, const std::string& path = "") {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_string()) throw InputError(file, path + key, "expected a string");
  return doc[key].get<std::string>();
}

const json& array(const json& doc, const char* key, const std::string& file, const std::string& path) {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_array()) throw InputError(file, path + key, "expected an array");
  return doc[key];
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

// The plan as a user types it: mbs, gbs and the fields that differ from the defaults
// (master_weights' default follows the precision).
std::string compact_plan(const Plan& p) {
  const nlohmann::ordered_json j = plan_to_json(p);
  const nlohmann::ordered_json defaults = plan_to_json(plan_from_json({{"precision", j["precision"]}}, "<defaults>"));
  std::string out;
  for (const auto& [key, value] : j.items())
    if (key == "mbs" || key == "gbs" || value != defaults.at(key))
      out += (out.empty() ? "" : ",") + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  return out;
}

std::vector<TimelineOp> timeline_ops(const json& timeline, const char* side, const std::string& file) {
  std::vector<TimelineOp> ops;
  const std::string path = std::string("compare.timeline.") + side;
  for (const json& op : array(timeline, side, file, "compare.timeline.")) {
    const std::string at = path + "[" + std::to_string(ops.size()) + "].";
    ops.push_back({text(op, "name", file, at), text(op, "category", file, at), number(op, "start_ms", file, at),
                   number(op, "duration_ms", file, at)});
  }
  return ops;
}

// A `moesim run --compare --json` document: the run's figures beside the prediction.
RunRow run_row_of(const json& doc, const std::string& file) {
  RunRow row;
  row.source = file;
  row.model = text(doc, "model", file);
  row.device = text(doc, "device", file);
  row.ranks = static_cast<int>(number(doc, "ranks", file, ""));
  if (!doc.contains("plan") || !doc["plan"].is_object()) throw InputError(file, "plan", "expected a plan object");
  const Plan plan = plan_from_json(doc["plan"], file);
  row.plan = short_plan(plan);
  row.label = compact_plan(plan);
  if (!doc.contains("compare") || !doc["compare"].is_object())
    throw InputError(file, "compare", "expected an object (the output of `moesim run --compare --json`)");
  const json& c = doc["compare"];
  row.cluster = text(c, "cluster", file, "compare.");
  row.profile = text(c, "profile", file, "compare.");
  for (const auto& [key, into] : {std::pair{"step_s", &row.step_s}, std::pair{"wps", &row.wps},
                                  std::pair{"tflops_per_gpu", &row.tflops_per_gpu}, std::pair{"mfu", &row.mfu},
                                  std::pair{"peak_bytes", &row.peak_bytes}}) {
    const std::string path = std::string("compare.") + key + ".";
    const json& figure = object(c, key, file, "compare.");
    *into = {number(figure, "predicted", file, path), number(figure, "measured", file, path),
             number(figure, "error", file, path)};
  }
  for (const auto& [category, t] : object(c, "by_category", file, "compare.").items()) {
    const std::string path = "compare.by_category." + category + ".";
    CategoryTime ct{category, number(t, "predicted_s", file, path), number(t, "measured_s", file, path), std::nullopt};
    if (!t.contains("error") || !(t["error"].is_number() || t["error"].is_null()))
      throw InputError(file, path + "error", "expected a number or null");
    if (t["error"].is_number()) ct.error = t["error"].get<double>();
    row.categories.push_back(std::move(ct));
  }
  const json& timeline = object(c, "timeline", file, "compare.");
  row.timeline_rank = static_cast<int>(number(timeline, "rank", file, "compare.timeline."));
  row.predicted_ops = timeline_ops(timeline, "predicted", file);
  row.measured_ops = timeline_ops(timeline, "measured", file);
  if (doc.contains("routing")) {
    const json& layers = array(object(doc, "routing", file), "expert1_per_layer", file, "routing.");
    for (const json& layer : layers) {
      const std::string path = "routing.expert1_per_layer[" + std::to_string(row.expert1_per_layer.size()) + "]";
      if (!layer.is_array()) throw InputError(file, path, "expected an array of tokens per expert");
      std::vector<double> tokens;
      for (const json& x : layer) {
        if (!x.is_number()) throw InputError(file, path, "expected an array of tokens per expert");
        tokens.push_back(x.get<double>());
      }
      row.expert1_per_layer.push_back(std::move(tokens));
    }
  }
  return row;
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
    } else if (doc.is_object() && doc.contains("steps") && doc["steps"].is_array()) {
      if (!report.runs) report.runs.emplace();
      report.runs->rows.push_back(run_row_of(doc, file));
    } else {
      throw InputError(file, "",
                       "expected the output of `moesim search --json`, `moesim simulate --json` or "
                       "`moesim run --compare --json`, or a profile");
    }
  }
  if (report.runs) {
    // One view of every run: titled by what the runs share, keyed in input order.
    RunView& v = *report.runs;
    std::set<std::string> models, places;
    std::vector<double> errors;
    for (std::size_t i = 0; i < v.rows.size(); ++i) {
      RunRow& r = v.rows[i];
      r.key = "run " + std::to_string(i + 1);
      models.insert(r.model);
      places.insert(std::to_string(r.ranks) + " " + r.device + " ranks (predicted for " + r.cluster + ", profile " +
                    r.profile + ")");
      errors.push_back(std::abs(r.step_s.error));
    }
    std::sort(errors.begin(), errors.end());
    const std::size_t n = errors.size();
    v.median_abs_step_error = n % 2 == 1 ? errors[n / 2] : 0.5 * (errors[n / 2 - 1] + errors[n / 2]);
    v.title = "Predicted vs measured: " + (models.size() == 1 ? *models.begin() : std::to_string(models.size()) + " models") +
              (places.size() == 1 ? " on " + *places.begin() : "");
    if (models.size() > 1)
      for (RunRow& r : v.rows) r.label = r.model + " " + r.label;
    std::map<std::string, int> seen;
    for (const RunRow& r : v.rows) ++seen[r.label];
    for (RunRow& r : v.rows)
      if (seen[r.label] > 1) r.label += " [" + r.source + "]";
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
  if (report.views.size() + report.profiles.size() + (report.runs ? 1 : 0) == 1)
    report.title += ": " + (!report.views.empty()      ? report.views[0].title
                            : !report.profiles.empty() ? report.profiles[0].title
                                                       : report.runs->title);
  return report;
}

}  // namespace moesim
