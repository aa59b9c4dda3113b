// Rendering a report as HTML (charts + tables), Markdown and CSVs; see render.hpp.
#include "src/report/render.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>

#ifndef MOESIM_SOURCE_DIR
#define MOESIM_SOURCE_DIR "."
#endif

namespace moesim {

namespace {

using ojson = nlohmann::ordered_json;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr const char* kVegaLiteSchema = "https://vega.github.io/schema/vega-lite/v6.json";
// The browser builds, in load order (vega-embed needs the other two).
constexpr const char* kChartLibraries[] = {"vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
                                           "vega-embed/build/vega-embed.min.js"};

std::string fmt(const char* f, double x) {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

// JSON inside a <script> element: "</" would end the element early.
std::string script_safe(std::string s) {
  for (std::size_t at = s.find("</"); at != std::string::npos; at = s.find("</", at + 3)) s.replace(at, 2, "<\\/");
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("report: cannot read the chart library " + path + " (run scripts/setup)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The components of every row of a view, in first-seen order.
std::vector<std::string> components(const std::vector<ReportRow>& rows) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const ReportRow& r : rows)
    for (const auto& [name, s] : r.breakdown)
      if (seen.insert(name).second) out.push_back(name);
  return out;
}

double component(const ReportRow& r, const std::string& name) {
  for (const auto& [n, s] : r.breakdown)
    if (n == name) return s;
  return 0;
}

// The human tables' columns, each a header and a formatter of a row: HTML and Markdown
// print the same cells.
struct Column {
  const char* header;
  std::string (*cell)(const ReportRow&);
};
const Column kColumns[] = {
    {"key", [](const ReportRow& r) { return r.key; }},
    {"label", [](const ReportRow& r) { return r.label; }},
    {"cluster", [](const ReportRow& r) { return r.cluster; }},
    {"profile", [](const ReportRow& r) { return r.profile; }},
    {"iteration (s)", [](const ReportRow& r) { return fmt("%.4g", r.iteration_s); }},
    {"tokens/s", [](const ReportRow& r) { return fmt("%.0f", r.wps); }},
    {"MFU (%)", [](const ReportRow& r) { return fmt("%.2f", 100 * r.mfu); }},
    {"peak memory (GiB)", [](const ReportRow& r) { return fmt("%.2f", r.peak_memory / kGiB); }},
    {"GPU memory (GiB)", [](const ReportRow& r) { return fmt("%.2f", r.gpu_memory / kGiB); }},
};

std::string breakdown_cell(const ReportRow& r, const std::string& name) { return fmt("%.4g", component(r, name)); }

double max_over_mean(const std::vector<double>& v) {
  double sum = 0, top = 0;
  for (double x : v) sum += x, top = std::max(top, x);
  return sum > 0 ? top * static_cast<double>(v.size()) / sum : 0;
}

// A table of printed cells, built once and written as Markdown and as HTML, so both
// carry the same text. The first `text_columns` columns are left-aligned text.
struct CellTable {
  std::vector<std::string> headers;
  std::size_t text_columns = 0;
  std::vector<std::vector<std::string>> rows;

  void markdown(std::ostream& md) const {
    md << "|";
    for (const std::string& h : headers) md << " " << md_cell(h) << " |";
    md << "\n|";
    for (std::size_t i = 0; i < headers.size(); ++i) md << (i < text_columns ? " --- |" : " ---: |");
    md << "\n";
    for (const auto& row : rows) {
      md << "|";
      for (const std::string& c : row) md << " " << md_cell(c) << " |";
      md << "\n";
    }
  }
  void html(std::ostream& h) const {
    h << "<table>\n<tr>";
    for (const std::string& c : headers) h << "<th>" << html_escape(c) << "</th>";
    h << "</tr>\n";
    for (const auto& row : rows) {
      h << "<tr>";
      for (std::size_t i = 0; i < row.size(); ++i)
        h << (i < text_columns ? "<td>" : "<td class=\"n\">") << html_escape(row[i]) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n";
  }
};

constexpr double kMiB = 1024.0 * 1024.0;

std::string error_cell(double e) { return fmt("%+.1f", 100 * e); }

// Predicted, measured and error of step time, tokens/s, MFU and peak memory per run.
CellTable run_table(const RunView& v) {
  CellTable t{{"key", "plan", "step pred. (s)", "step meas. (s)", "step err. (%)", "tokens/s pred.", "tokens/s meas.",
               "tokens/s err. (%)", "MFU pred. (%)", "MFU meas. (%)", "MFU err. (%)", "peak pred. (MiB)",
               "peak meas. (MiB)", "peak err. (%)"},
              2,
              {}};
  for (const RunRow& r : v.rows)
    t.rows.push_back({r.key, r.label, fmt("%.4g", r.step_s.predicted), fmt("%.4g", r.step_s.measured),
                      error_cell(r.step_s.error), fmt("%.0f", r.wps.predicted), fmt("%.0f", r.wps.measured),
                      error_cell(r.wps.error), fmt("%.3f", 100 * r.mfu.predicted), fmt("%.3f", 100 * r.mfu.measured),
                      error_cell(r.mfu.error), fmt("%.1f", r.peak_bytes.predicted / kMiB),
                      fmt("%.1f", r.peak_bytes.measured / kMiB), error_cell(r.peak_bytes.error)});
  return t;
}

// Time per op category in one update of rank 0, per run.
CellTable category_table(const RunView& v) {
  CellTable t{{"key", "plan", "category", "predicted (s)", "measured (s)", "error (%)"}, 3, {}};
  for (const RunRow& r : v.rows)
    for (const CategoryTime& c : r.categories)
      t.rows.push_back({r.key, r.label, c.category, fmt("%.4g", c.predicted_s), fmt("%.4g", c.measured_s),
                        c.error ? error_cell(*c.error) : "n/a"});
  return t;
}

std::string tokens_list(const std::vector<double>& tokens) {
  std::string out;
  for (double x : tokens) out += (out.empty() ? "" : " ") + fmt("%.0f", x);
  return out;
}

// First-choice tokens per expert per MoE layer, per MoE run.
CellTable expert_table(const RunView& v) {
  CellTable t{{"key", "plan", "MoE layer", "tokens (first choice)", "busiest expert / mean", "tokens per expert"}, 2, {}};
  for (const RunRow& r : v.rows)
    for (std::size_t l = 0; l < r.expert1_per_layer.size(); ++l) {
      double total = 0;
      for (double x : r.expert1_per_layer[l]) total += x;
      t.rows.push_back({r.key, r.label, std::to_string(l), fmt("%.0f", total),
                        fmt("%.3f", max_over_mean(r.expert1_per_layer[l])), tokens_list(r.expert1_per_layer[l])});
    }
  return t;
}

bool any_routing(const RunView& v) {
  return std::any_of(v.rows.begin(), v.rows.end(), [](const RunRow& r) { return !r.expert1_per_layer.empty(); });
}

std::string run_caption(const RunView& v) {
  return "Measured: the median update after the first (tokens/s and MFU from it), the most any rank held; "
         "predicted: the simulator's event tier on the same model and plan, routed as the run routed. "
         "Error = (predicted - measured) / measured. Median |step-time error| over " +
         std::to_string(v.rows.size()) + " run(s): " + fmt("%.1f", 100 * v.median_abs_step_error) + "%.";
}

// The y encoding of the charts with a bar or a row per report row: its label, in order.
ojson label_axis() {
  return {{"field", "label"}, {"type", "nominal"}, {"sort", nullptr}, {"title", nullptr}, {"axis", {{"labelLimit", 480}}}};
}

// Tokens per expert (x) per row (y, the cells' "label") as a heatmap coloured by `count`;
// the tooltip adds `extra` fields.
ojson expert_heatmap(const std::string& title, const ojson& cells, const char* count, const char* count_title,
                     const std::vector<const char*>& extra) {
  ojson tooltip = ojson::array({{{"field", "label"}}, {{"field", "expert"}}, {{"field", count}}});
  for (const char* f : extra) tooltip.push_back({{"field", f}});
  return {{"$schema", kVegaLiteSchema},
          {"title", title},
          {"data", {{"values", cells}}},
          {"mark", "rect"},
          {"encoding",
           {{"x", {{"field", "expert"}, {"type", "ordinal"}, {"title", "expert"}}},
            {"y", label_axis()},
            {"color", {{"field", count}, {"type", "quantitative"}, {"title", count_title}}},
            {"tooltip", tooltip}}}};
}

// Each op with its lane: 0 unless it overlaps an op placed before it (longest first
// among those starting together), then the first lane free at its start.
std::vector<std::pair<const TimelineOp*, int>> overlap_lanes(const std::vector<TimelineOp>& ops) {
  std::vector<const TimelineOp*> order;
  for (const TimelineOp& op : ops) order.push_back(&op);
  std::stable_sort(order.begin(), order.end(), [](const TimelineOp* a, const TimelineOp* b) {
    return a->start_ms != b->start_ms ? a->start_ms < b->start_ms : a->duration_ms > b->duration_ms;
  });
  constexpr double kTouchMs = 1e-6;  // ops that end where the next starts do not overlap
  std::vector<double> lane_end;
  std::vector<std::pair<const TimelineOp*, int>> out;
  for (const TimelineOp* op : order) {
    std::size_t lane = 0;
    while (lane < lane_end.size() && lane_end[lane] > op->start_ms + kTouchMs) ++lane;
    if (lane == lane_end.size()) lane_end.push_back(0);
    lane_end[lane] = op->start_ms + op->duration_ms;
    out.emplace_back(op, static_cast<int>(lane));
  }
  return out;
}

}  // namespace

std::string chart_library_dir() {
  const char* env = std::getenv("MOESIM_CHART_LIBS");
  const std::string dir = env && *env ? env : std::string(MOESIM_SOURCE_DIR) + "/node_modules";
  for (const char* lib : kChartLibraries) {
    std::error_code ec;
    if (!std::filesystem::exists(dir + "/" + lib, ec))
      throw std::runtime_error("report: the chart library " + dir + "/" + lib +
                               " is missing (scripts/setup installs it; MOESIM_CHART_LIBS overrides the folder)");
  }
  return dir;
}

std::vector<ojson> view_specs(const ReportView& view) {
  ojson wps = ojson::array(), parts = ojson::array(), memory = ojson::array();
  for (const ReportRow& r : view.rows) {
    wps.push_back({{"label", r.label}, {"wps", r.wps}, {"iteration_s", r.iteration_s}, {"mfu", r.mfu}});
    for (const auto& [name, s] : r.breakdown)
      if (s > 0) parts.push_back({{"label", r.label}, {"component", name}, {"seconds", s}});
    memory.push_back({{"label", r.label}, {"peak_gib", r.peak_memory / kGiB}, {"gpu_gib", r.gpu_memory / kGiB}});
  }
  const ojson y = label_axis();
  std::vector<ojson> specs;
  specs.push_back({{"$schema", kVegaLiteSchema},
                   {"title", "Throughput (tokens/s)"},
                   {"width", 520},
                   {"data", {{"values", wps}}},
                   {"mark", "bar"},
                   {"encoding",
                    {{"y", y},
                     {"x", {{"field", "wps"}, {"type", "quantitative"}, {"title", "tokens/s"}}},
                     {"tooltip", ojson::array({{{"field", "label"}}, {{"field", "wps"}, {"format", ",.0f"}},
                                               {{"field", "iteration_s"}, {"format", ".4g"}},
                                               {{"field", "mfu"}, {"format", ".1%"}}})}}}});
  specs.push_back({{"$schema", kVegaLiteSchema},
                   {"title", "Time per iteration by component (s)"},
                   {"width", 520},
                   {"data", {{"values", parts}}},
                   {"mark", "bar"},
                   {"encoding",
                    {{"y", y},
                     {"x", {{"aggregate", "sum"}, {"field", "seconds"}, {"type", "quantitative"}, {"title", "seconds"}}},
                     {"color", {{"field", "component"}, {"type", "nominal"}, {"legend", {{"labelLimit", 300}}}}},
                     {"tooltip", ojson::array({{{"field", "label"}}, {{"field", "component"}},
                                               {{"field", "seconds"}, {"format", ".4g"}}})}}}});
  specs.push_back({{"$schema", kVegaLiteSchema},
                   {"title", "Peak memory per GPU (GiB); the tick is the GPU's capacity"},
                   {"width", 520},
                   {"data", {{"values", memory}}},
                   {"encoding", {{"y", y}}},
                   {"layer", ojson::array({{{"mark", "bar"},
                                            {"encoding", {{"x", {{"field", "peak_gib"}, {"type", "quantitative"},
                                                                 {"title", "GiB"}}}}}},
                                           {{"mark", {{"type", "tick"}, {"color", "#d62728"}, {"thickness", 3}}},
                                            {"encoding", {{"x", {{"field", "gpu_gib"}, {"type", "quantitative"}}}}}}})}});
  ojson cells = ojson::array(), drops = ojson::array();
  for (const ReportRow& r : view.rows) {
    if (r.kept.empty()) continue;
    for (std::size_t e = 0; e < r.kept.size(); ++e)
      cells.push_back({{"label", r.label}, {"expert", static_cast<int>(e)}, {"kept", r.kept[e]}, {"demand", r.demand[e]}});
    drops.push_back({{"label", r.label}, {"dropped", r.dropped_fraction}, {"routing", r.routing}});
  }
  if (!cells.empty()) {
    specs.push_back(expert_heatmap("Expert balance: tokens kept per expert (one micro-batch of one rank, one MoE layer)",
                                   cells, "kept", "tokens kept", {"demand"}));
    specs.push_back({{"$schema", kVegaLiteSchema},
                     {"title", "Routed choices dropped over capacity"},
                     {"width", 520},
                     {"data", {{"values", drops}}},
                     {"mark", "bar"},
                     {"encoding",
                      {{"y", y},
                       {"x", {{"field", "dropped"}, {"type", "quantitative"}, {"axis", {{"format", ".1%"}}},
                              {"title", "dropped"}}},
                       {"tooltip", ojson::array({{{"field", "label"}}, {{"field", "routing"}},
                                                 {{"field", "dropped"}, {"format", ".2%"}}})}}}});
  }
  return specs;
}

std::vector<ojson> profile_specs(const ProfileView& view) {
  struct Chart {
    const char* id;
    const char* title;
    const char* x_title;
    const char* y_title;
  };
  const Chart charts[] = {
      {"gemm", "GEMMs: achieved TFLOP/s (points measured, lines the fit)", "FLOPs per call", "TFLOP/s"},
      {"memory", "Memory-bound kernels: achieved GB/s (points measured, lines the fit)", "bytes moved per call", "GB/s"},
      {"collective", "Collectives: bus bandwidth (points measured, lines the alpha-beta fit)", "message bytes",
       "busbw GB/s"}};
  std::vector<ojson> specs;
  for (const Chart& c : charts) {
    ojson values = ojson::array();
    for (const ProfilePoint& p : view.points)
      if (p.chart == c.id)
        values.push_back({{"series", p.series}, {"x", p.x}, {"measured", p.measured}, {"fitted", p.fitted}});
    if (values.empty()) continue;
    const ojson tooltip = ojson::array({{{"field", "series"}}, {{"field", "x"}, {"format", ".4s"}},
                                        {{"field", "measured"}, {"format", ".4g"}}, {{"field", "fitted"}, {"format", ".4g"}}});
    specs.push_back(
        {{"$schema", kVegaLiteSchema},
         {"title", c.title},
         {"width", 520},
         {"data", {{"values", values}}},
         {"encoding",
          {{"x", {{"field", "x"}, {"type", "quantitative"}, {"scale", {{"type", "log"}}}, {"title", c.x_title}}},
           {"color", {{"field", "series"}, {"type", "nominal"}, {"legend", {{"labelLimit", 300}}}}},
           {"tooltip", tooltip}}},
         {"layer", ojson::array({{{"mark", {{"type", "point"}, {"filled", true}}},
                                  {"encoding", {{"y", {{"field", "measured"}, {"type", "quantitative"}, {"title", c.y_title}}}}}},
                                 {{"mark", "line"}, {"encoding", {{"y", {{"field", "fitted"}, {"type", "quantitative"}}}}}}})}});
  }
  return specs;
}

std::vector<ojson> run_specs(const RunView& view) {
  std::vector<ojson> specs;
  // Predicted against measured step time, each point a run (its key beside it, its plan in
  // the legend), with the line predicted = measured across the points' range.
  ojson points = ojson::array();
  double low = 0, high = 0;
  for (const RunRow& r : view.rows) {
    points.push_back({{"key", r.key}, {"run", r.key + ": " + r.label}, {"label", r.label},
                      {"measured_s", r.step_s.measured}, {"predicted_s", r.step_s.predicted}, {"error", r.step_s.error}});
    const double lo = std::min(r.step_s.measured, r.step_s.predicted), hi = std::max(r.step_s.measured, r.step_s.predicted);
    low = points.size() == 1 ? lo : std::min(low, lo);
    high = std::max(high, hi);
  }
  low = std::max(0.0, low - 0.1 * (high - low) - 0.05 * high);
  high = high + 0.1 * (high - low);
  const ojson domain = ojson::array({low, high});
  const ojson x = {{"type", "quantitative"}, {"scale", {{"domain", domain}, {"zero", false}}}, {"title", "measured step time (s)"}};
  const ojson y = {{"type", "quantitative"}, {"scale", {{"domain", domain}, {"zero", false}}}, {"title", "predicted step time (s)"}};
  auto with_field = [](ojson axis, const char* field) {
    axis["field"] = field;
    return axis;
  };
  specs.push_back(
      {{"$schema", kVegaLiteSchema},
       {"title",
        {{"text", "Step time: predicted against measured (s), one point per run"},
         {"subtitle", "the dashed line is predicted = measured; median |error| " +
                          fmt("%.1f", 100 * view.median_abs_step_error) + "% over " + std::to_string(view.rows.size()) +
                          " run(s)"}}},
       {"width", 420},
       {"height", 420},
       {"layer",
        ojson::array(
            {{{"data", {{"values", ojson::array({{{"s", low}}, {{"s", high}}})}}},
              {"mark", {{"type", "line"}, {"color", "#888"}, {"strokeDash", ojson::array({4, 4})}, {"clip", true}}},
              {"encoding", {{"x", with_field(x, "s")}, {"y", with_field(y, "s")}}}},
             {{"data", {{"values", points}}},
              {"mark", {{"type", "point"}, {"filled", true}, {"size", 90}}},
              {"encoding",
               {{"x", with_field(x, "measured_s")},
                {"y", with_field(y, "predicted_s")},
                {"color", {{"field", "run"}, {"type", "nominal"}, {"sort", nullptr}, {"title", "run: plan"},
                           {"legend", {{"labelLimit", 400}}}}},
                {"tooltip", ojson::array({{{"field", "key"}}, {{"field", "label"}, {"title", "plan"}},
                                          {{"field", "measured_s"}, {"format", ".4g"}},
                                          {{"field", "predicted_s"}, {"format", ".4g"}},
                                          {{"field", "error"}, {"format", "+.1%"}}})}}}},
             {{"data", {{"values", points}}},
              {"mark", {{"type", "text"}, {"align", "left"}, {"dx", 8}, {"dy", -6}, {"fontSize", 10}}},
              {"encoding",
               {{"x", with_field(x, "measured_s")}, {"y", with_field(y, "predicted_s")}, {"text", {{"field", "key"}}}}}}})}});
  // Rank 0's update: a row predicted, a row measured, x in ms. An op that overlaps one
  // drawn before it (the simulator's gradient buckets under the backward) is drawn as a
  // thinner bar over it; every timeline colours a category alike.
  std::set<std::string> categories;
  for (const RunRow& r : view.rows)
    for (const auto* ops : {&r.predicted_ops, &r.measured_ops})
      for (const TimelineOp& op : *ops) categories.insert(op.category);
  const ojson color = {{"field", "category"}, {"type", "nominal"}, {"title", "op category"},
                       {"scale", {{"domain", ojson(std::vector<std::string>(categories.begin(), categories.end()))}}}};
  for (std::size_t i = 0; i < view.rows.size() && i < kMaxTimelines; ++i) {
    const RunRow& r = view.rows[i];
    ojson bars = ojson::array();
    for (const auto& [side, ops] : {std::pair{"predicted", &r.predicted_ops}, std::pair{"measured", &r.measured_ops}}) {
      for (const auto& [op, lane] : overlap_lanes(*ops))
        bars.push_back({{"side", side}, {"name", op->name}, {"category", op->category}, {"start_ms", op->start_ms},
                        {"end_ms", op->start_ms + op->duration_ms}, {"duration_ms", op->duration_ms}, {"lane", lane}});
    }
    if (bars.empty()) continue;
    const ojson encoding = {
        {"y", {{"field", "side"}, {"type", "nominal"}, {"sort", ojson::array({"predicted", "measured"})}, {"title", nullptr}}},
        {"x", {{"field", "start_ms"}, {"type", "quantitative"}, {"title", "ms from the update's first op"}}},
        {"x2", {{"field", "end_ms"}}},
        {"color", color},
        {"tooltip", ojson::array({{{"field", "side"}}, {{"field", "name"}}, {{"field", "category"}},
                                  {{"field", "start_ms"}, {"format", ".3f"}}, {{"field", "duration_ms"}, {"format", ".3f"}}})}};
    specs.push_back(
        {{"$schema", kVegaLiteSchema},
         {"title", "Rank " + std::to_string(r.timeline_rank) + ", one update, predicted and measured: " + r.label + " (" +
                       r.key + ")"},
         {"width", 900},
         {"height", {{"step", 30}}},
         {"data", {{"values", bars}}},
         {"encoding", encoding},
         {"layer", ojson::array({{{"transform", ojson::array({{{"filter", "datum.lane == 0"}}})},
                                  {"mark", {{"type", "bar"}, {"stroke", "white"}, {"strokeWidth", 0.5}}}},
                                 {{"transform", ojson::array({{{"filter", "datum.lane > 0"}}})},
                                  {"mark", {{"type", "bar"}, {"height", {{"band", 0.4}}}, {"stroke", "#333"},
                                            {"strokeWidth", 0.5}}}}})}});
  }
  // First-choice tokens per expert, a heatmap row per run and MoE layer.
  ojson cells = ojson::array();
  for (const RunRow& r : view.rows)
    for (std::size_t l = 0; l < r.expert1_per_layer.size(); ++l)
      for (std::size_t e = 0; e < r.expert1_per_layer[l].size(); ++e)
        cells.push_back({{"label", r.label + " · MoE layer " + std::to_string(l)}, {"run", r.key},
                         {"moe_layer", static_cast<int>(l)}, {"expert", static_cast<int>(e)},
                         {"tokens", r.expert1_per_layer[l][e]}});
  if (!cells.empty())
    specs.push_back(expert_heatmap("Expert balance per MoE layer: tokens whose first choice was each expert (whole run)",
                                   cells, "tokens", "tokens", {"run", "moe_layer"}));
  return specs;
}

ojson report_data_json(const Report& report) {
  ojson views = ojson::array();
  for (const ReportView& v : report.views) {
    ojson rows = ojson::array();
    for (const ReportRow& r : v.rows) {
      ojson b = ojson::object();
      for (const auto& [name, s] : r.breakdown) b[name] = s;
      rows.push_back({{"key", r.key}, {"label", r.label},     {"source", r.source},         {"model", r.model},
                      {"cluster", r.cluster}, {"profile", r.profile},       {"plan", r.plan},
                      {"iteration_s", r.iteration_s}, {"wps", r.wps},       {"mfu", r.mfu},
                      {"peak_memory_bytes", r.peak_memory}, {"gpu_memory_bytes", r.gpu_memory}, {"breakdown_s", b}});
      if (!r.kept.empty()) {
        rows.back()["routing"] = r.routing;
        rows.back()["dropped_fraction"] = r.dropped_fraction;
        rows.back()["demand_per_expert"] = r.demand;
        rows.back()["kept_per_expert"] = r.kept;
      }
    }
    views.push_back({{"kind", v.kind}, {"title", v.title}, {"rows", rows}});
  }
  ojson profiles = ojson::array();
  for (const ProfileView& p : report.profiles) {
    ojson points = ojson::array();
    for (const ProfilePoint& q : p.points)
      points.push_back({{"chart", q.chart}, {"series", q.series}, {"x", q.x}, {"measured", q.measured}, {"fitted", q.fitted}});
    profiles.push_back({{"title", p.title}, {"source", p.source}, {"points", points}});
  }
  ojson out = {{"title", report.title}, {"inputs", report.inputs}, {"views", views}, {"profiles", profiles}};
  if (report.runs) {
    auto figure = [](const Predicted& p) {
      return ojson{{"predicted", p.predicted}, {"measured", p.measured}, {"error", p.error}};
    };
    auto ops = [](const std::vector<TimelineOp>& list) {
      ojson a = ojson::array();
      for (const TimelineOp& op : list)
        a.push_back({{"name", op.name}, {"category", op.category}, {"start_ms", op.start_ms}, {"duration_ms", op.duration_ms}});
      return a;
    };
    ojson rows = ojson::array();
    for (const RunRow& r : report.runs->rows) {
      ojson categories = ojson::array();
      for (const CategoryTime& c : r.categories)
        categories.push_back({{"category", c.category}, {"predicted_s", c.predicted_s}, {"measured_s", c.measured_s},
                              {"error", c.error ? ojson(*c.error) : ojson(nullptr)}});
      rows.push_back({{"key", r.key}, {"label", r.label}, {"source", r.source}, {"model", r.model}, {"device", r.device},
                      {"ranks", r.ranks}, {"cluster", r.cluster}, {"profile", r.profile}, {"plan", r.plan},
                      {"step_s", figure(r.step_s)}, {"wps", figure(r.wps)}, {"tflops_per_gpu", figure(r.tflops_per_gpu)},
                      {"mfu", figure(r.mfu)}, {"peak_bytes", figure(r.peak_bytes)}, {"by_category", categories},
                      {"timeline", {{"rank", r.timeline_rank}, {"predicted", ops(r.predicted_ops)},
                                    {"measured", ops(r.measured_ops)}}},
                      {"expert1_per_layer", r.expert1_per_layer}});
    }
    out["runs"] = {{"title", report.runs->title}, {"median_abs_step_error", report.runs->median_abs_step_error},
                   {"rows", rows}};
  }
  return out;
}

RenderedReport render_report(const Report& report, const std::string& chart_libs) {
  RenderedReport out;

  // Markdown: per view, the summary table and the breakdown table (a row per component).
  std::ostringstream md;
  md << "# " << report.title << "\n\nInputs: ";
  for (std::size_t i = 0; i < report.inputs.size(); ++i) md << (i ? ", " : "") << "`" << report.inputs[i] << "`";
  md << "\n";
  for (const ReportView& v : report.views) {
    md << "\n## " << v.title << "\n\n|";
    for (const Column& c : kColumns) md << " " << c.header << " |";
    md << "\n|";
    for (std::size_t i = 0; i < std::size(kColumns); ++i) md << (i < 4 ? " --- |" : " ---: |");
    md << "\n";
    for (const ReportRow& r : v.rows) {
      md << "|";
      for (const Column& c : kColumns) md << " " << md_cell(c.cell(r)) << " |";
      md << "\n";
    }
    md << "\nTime per iteration by component (s):\n\n| component |";
    for (const ReportRow& r : v.rows) md << " " << md_cell(r.key) << " |";
    md << "\n| --- |";
    for (std::size_t i = 0; i < v.rows.size(); ++i) md << " ---: |";
    md << "\n";
    for (const std::string& name : components(v.rows)) {
      md << "| " << md_cell(name) << " |";
      for (const ReportRow& r : v.rows) md << " " << breakdown_cell(r, name) << " |";
      md << "\n";
    }
    if (std::any_of(v.rows.begin(), v.rows.end(), [](const ReportRow& r) { return !r.kept.empty(); })) {
      md << "\nExpert balance (one micro-batch of one rank, one MoE layer):\n\n"
         << "| key | routing | experts | dropped (%) | busiest expert / mean (kept) |\n| --- | --- | ---: | ---: | ---: |\n";
      for (const ReportRow& r : v.rows)
        if (!r.kept.empty())
          md << "| " << md_cell(r.key) << " | " << md_cell(r.routing) << " | " << r.kept.size() << " | "
             << fmt("%.2f", 100 * r.dropped_fraction) << " | " << fmt("%.3f", max_over_mean(r.kept)) << " |\n";
    }
  }
  for (const ProfileView& p : report.profiles) {
    md << "\n## " << p.title << "\n\nFrom `" << p.source << "`.\n\n| chart | series | x | measured | fitted |\n"
       << "| --- | --- | ---: | ---: | ---: |\n";
    for (const ProfilePoint& q : p.points)
      md << "| " << q.chart << " | " << md_cell(q.series) << " | " << fmt("%.4g", q.x) << " | " << fmt("%.4g", q.measured)
         << " | " << fmt("%.4g", q.fitted) << " |\n";
  }
  if (report.runs) {
    const RunView& v = *report.runs;
    md << "\n## " << v.title << "\n\n" << run_caption(v) << "\n\n";
    run_table(v).markdown(md);
    md << "\nTime per op category in one update of rank 0 (s):\n\n";
    category_table(v).markdown(md);
    if (any_routing(v)) {
      md << "\nExpert balance per MoE layer (tokens whose first choice was each expert, whole run):\n\n";
      expert_table(v).markdown(md);
    }
  }
  out.markdown = md.str();
  if (!report.profiles.empty()) {
    std::ostringstream pc;
    pc << "profile,chart,series,x,measured,fitted\n";
    for (const ProfileView& p : report.profiles)
      for (const ProfilePoint& q : p.points)
        pc << csv_field(p.title) << "," << q.chart << "," << csv_field(q.series) << "," << fmt("%.17g", q.x) << ","
           << fmt("%.17g", q.measured) << "," << fmt("%.17g", q.fitted) << "\n";
    out.profile_csv = pc.str();
  }
  {
    std::ostringstream bc;
    for (const ReportView& v : report.views)
      for (const ReportRow& r : v.rows)
        for (std::size_t e = 0; e < r.kept.size(); ++e)
          bc << csv_field(v.title) << "," << csv_field(r.label) << "," << csv_field(r.routing) << "," << e << ","
             << fmt("%.17g", r.demand[e]) << "," << fmt("%.17g", r.kept[e]) << "\n";
    if (!bc.str().empty()) out.balance_csv = "view,label,routing,expert,demand,kept\n" + bc.str();
  }

  if (report.runs) {
    const RunView& v = *report.runs;
    std::ostringstream rc, cc, tc, ec;
    rc << "label,source,model,device,ranks,cluster,profile,plan";
    for (const char* f : {"step_s", "wps", "tflops_per_gpu", "mfu", "peak_bytes"})
      rc << "," << f << "_predicted," << f << "_measured," << f << "_error";
    rc << "\n";
    cc << "label,category,predicted_s,measured_s,error\n";
    tc << "label,side,name,category,start_ms,duration_ms\n";
    ec << "label,moe_layer,expert,tokens\n";
    for (const RunRow& r : v.rows) {
      rc << csv_field(r.label) << "," << csv_field(r.source) << "," << csv_field(r.model) << "," << csv_field(r.device)
         << "," << r.ranks << "," << csv_field(r.cluster) << "," << csv_field(r.profile) << "," << csv_field(r.plan);
      for (const Predicted* p : {&r.step_s, &r.wps, &r.tflops_per_gpu, &r.mfu, &r.peak_bytes})
        rc << "," << fmt("%.17g", p->predicted) << "," << fmt("%.17g", p->measured) << "," << fmt("%.17g", p->error);
      rc << "\n";
      for (const CategoryTime& c : r.categories)
        cc << csv_field(r.label) << "," << csv_field(c.category) << "," << fmt("%.17g", c.predicted_s) << ","
           << fmt("%.17g", c.measured_s) << "," << (c.error ? fmt("%.17g", *c.error) : "") << "\n";
      for (const auto& [side, ops] : {std::pair{"predicted", &r.predicted_ops}, std::pair{"measured", &r.measured_ops}})
        for (const TimelineOp& op : *ops)
          tc << csv_field(r.label) << "," << side << "," << csv_field(op.name) << "," << csv_field(op.category) << ","
             << fmt("%.17g", op.start_ms) << "," << fmt("%.17g", op.duration_ms) << "\n";
      for (std::size_t l = 0; l < r.expert1_per_layer.size(); ++l)
        for (std::size_t e = 0; e < r.expert1_per_layer[l].size(); ++e)
          ec << csv_field(r.label) << "," << l << "," << e << "," << fmt("%.17g", r.expert1_per_layer[l][e]) << "\n";
    }
    out.runs_csv = rc.str();
    out.run_categories_csv = cc.str();
    out.run_timelines_csv = tc.str();
    if (any_routing(v)) out.run_experts_csv = ec.str();
  }

  // CSV: one line per row of every view, full precision, components as columns.
  std::vector<std::string> all_components;
  {
    std::vector<ReportRow> rows;
    for (const ReportView& v : report.views) rows.insert(rows.end(), v.rows.begin(), v.rows.end());
    all_components = components(rows);
  }
  std::ostringstream csv;
  csv << "view,label,source,model,cluster,profile,plan,iteration_s,wps,mfu,peak_memory_bytes,gpu_memory_bytes";
  for (const std::string& c : all_components) csv << "," << csv_field(c + " (s)");
  csv << "\n";
  for (const ReportView& v : report.views) {
    for (const ReportRow& r : v.rows) {
      csv << csv_field(v.title) << "," << csv_field(r.label) << "," << csv_field(r.source) << "," << csv_field(r.model)
          << "," << csv_field(r.cluster) << "," << csv_field(r.profile) << "," << csv_field(r.plan);
      for (double x : {r.iteration_s, r.wps, r.mfu, r.peak_memory, r.gpu_memory}) csv << "," << fmt("%.17g", x);
      for (const std::string& c : all_components) csv << "," << fmt("%.17g", component(r, c));
      csv << "\n";
    }
  }
  out.csv = csv.str();

  // HTML: the error catcher first (so a failing library is caught), the libraries, then
  // per view its charts and tables; the data and the specs travel as JSON.
  std::ostringstream h;
  h << "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << html_escape(report.title)
    << "</title>\n<style>\n"
       "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\n"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}\n"
       "th,td{border:1px solid #ccc;padding:3px 8px}td:first-child{white-space:nowrap}\n"
       "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
       ".chart{margin:1em 0}\n#moesim-errors{color:#b00}\n"
       "</style>\n<script>\n"
       "window.moesimErrors = [];\n"
       "function moesimRecord(m) {\n"
       "  window.moesimErrors.push(String(m));\n"
       "  const list = document.getElementById('moesim-errors');\n"
       "  if (list) { const li = document.createElement('li'); li.className = 'console-error'; li.textContent = String(m); list.appendChild(li); }\n"
       "}\n"
       "window.addEventListener('error', e => moesimRecord(e.message));\n"
       "window.addEventListener('unhandledrejection', e => moesimRecord(e.reason));\n"
       "const moesimConsoleError = console.error;\n"
       "console.error = function(...args) { moesimRecord(args.join(' ')); moesimConsoleError.apply(console, args); };\n"
       "</script>\n";
  for (const char* lib : kChartLibraries) h << "<script>\n" << read_all(chart_libs + "/" + lib) << "\n</script>\n";
  h << "</head>\n<body>\n<h1>" << html_escape(report.title) << "</h1>\n<p>Inputs: ";
  for (std::size_t i = 0; i < report.inputs.size(); ++i) h << (i ? ", " : "") << "<code>" << html_escape(report.inputs[i]) << "</code>";
  h << "</p>\n<ul id=\"moesim-errors\"></ul>\n";
  ojson specs = ojson::array();
  for (const ReportView& v : report.views) {
    h << "<h2>" << html_escape(v.title) << "</h2>\n";
    for (const ojson& s : view_specs(v)) {
      h << "<div class=\"chart\" id=\"chart-" << specs.size() << "\"></div>\n";
      specs.push_back(s);
    }
    h << "<table>\n<tr>";
    for (const Column& c : kColumns) h << "<th>" << html_escape(c.header) << "</th>";
    h << "</tr>\n";
    for (const ReportRow& r : v.rows) {
      h << "<tr>";
      std::size_t i = 0;
      for (const Column& c : kColumns) h << (i++ < 4 ? "<td>" : "<td class=\"n\">") << html_escape(c.cell(r)) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n<table>\n<tr><th>time per iteration (s)</th>";
    for (const ReportRow& r : v.rows) h << "<th>" << html_escape(r.key) << "</th>";
    h << "</tr>\n";
    for (const std::string& name : components(v.rows)) {
      h << "<tr><td>" << html_escape(name) << "</td>";
      for (const ReportRow& r : v.rows) h << "<td class=\"n\">" << breakdown_cell(r, name) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n";
    if (std::any_of(v.rows.begin(), v.rows.end(), [](const ReportRow& r) { return !r.kept.empty(); })) {
      h << "<table>\n<tr><th>key</th><th>routing</th><th>experts</th><th>dropped (%)</th>"
           "<th>busiest expert / mean (kept)</th></tr>\n";
      for (const ReportRow& r : v.rows)
        if (!r.kept.empty())
          h << "<tr><td>" << html_escape(r.key) << "</td><td>" << html_escape(r.routing) << "</td><td class=\"n\">"
            << r.kept.size() << "</td><td class=\"n\">" << fmt("%.2f", 100 * r.dropped_fraction)
            << "</td><td class=\"n\">" << fmt("%.3f", max_over_mean(r.kept)) << "</td></tr>\n";
      h << "</table>\n";
    }
  }
  for (const ProfileView& p : report.profiles) {
    h << "<h2>" << html_escape(p.title) << "</h2>\n<p>From <code>" << html_escape(p.source) << "</code>.</p>\n";
    for (const ojson& s : profile_specs(p)) {
      h << "<div class=\"chart\" id=\"chart-" << specs.size() << "\"></div>\n";
      specs.push_back(s);
    }
    h << "<table>\n<tr><th>chart</th><th>series</th><th>x</th><th>measured</th><th>fitted</th></tr>\n";
    for (const ProfilePoint& q : p.points)
      h << "<tr><td>" << q.chart << "</td><td>" << html_escape(q.series) << "</td><td class=\"n\">" << fmt("%.4g", q.x)
        << "</td><td class=\"n\">" << fmt("%.4g", q.measured) << "</td><td class=\"n\">" << fmt("%.4g", q.fitted)
        << "</td></tr>\n";
    h << "</table>\n";
  }
  if (report.runs) {
    const RunView& v = *report.runs;
    h << "<h2>" << html_escape(v.title) << "</h2>\n<p>" << html_escape(run_caption(v)) << "</p>\n";
    std::vector<ojson> charts = run_specs(v);
    // The scatter, then the table of the figures it summarises, then the rest.
    for (std::size_t i = 0; i < charts.size(); ++i) {
      h << "<div class=\"chart\" id=\"chart-" << specs.size() << "\"></div>\n";
      specs.push_back(charts[i]);
      if (i == 0) {
        run_table(v).html(h);
        h << "<p>Time per op category in one update of rank 0 (s):</p>\n";
        category_table(v).html(h);
        if (v.rows.size() > kMaxTimelines)
          h << "<p>Timelines of the first " << kMaxTimelines << " runs of " << v.rows.size() << ".</p>\n";
      }
    }
    if (any_routing(v)) expert_table(v).html(h);
  }
  h << "<script type=\"application/json\" id=\"moesim-data\">" << script_safe(report_data_json(report).dump())
    << "</script>\n<script type=\"application/json\" id=\"moesim-specs\">" << script_safe(specs.dump())
    << "</script>\n<script>\n"
       "const moesimSpecs = JSON.parse(document.getElementById('moesim-specs').textContent);\n"
       "Promise.all(moesimSpecs.map((s, i) => vegaEmbed('#chart-' + i, s, {actions: false, renderer: 'svg'})"
       ".catch(moesimRecord)))\n"
       "  .then(() => document.body.setAttribute('data-charts-done', String(moesimSpecs.length)));\n"
       "</script>\n</body>\n</html>\n";
  out.html = h.str();
  return out;
}

}  // namespace moesim
