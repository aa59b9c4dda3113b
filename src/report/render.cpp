// Rendering a report as HTML (charts + tables), Markdown and CSV; see render.hpp.
#include "src/report/render.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
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
  const ojson y = {{"field", "label"}, {"type", "nominal"}, {"sort", nullptr}, {"title", nullptr},
                   {"axis", {{"labelLimit", 480}}}};
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
    specs.push_back({{"$schema", kVegaLiteSchema},
                     {"title", "Expert balance: tokens kept per expert (one micro-batch of one rank, one MoE layer)"},
                     {"data", {{"values", cells}}},
                     {"mark", "rect"},
                     {"encoding",
                      {{"x", {{"field", "expert"}, {"type", "ordinal"}, {"title", "expert"}}},
                       {"y", y},
                       {"color", {{"field", "kept"}, {"type", "quantitative"}, {"title", "tokens kept"}}},
                       {"tooltip", ojson::array({{{"field", "label"}}, {{"field", "expert"}}, {{"field", "kept"}},
                                                 {{"field", "demand"}}})}}}});
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
  return {{"title", report.title}, {"inputs", report.inputs}, {"views", views}, {"profiles", profiles}};
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
       "th,td{border:1px solid #ccc;padding:3px 8px}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
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
