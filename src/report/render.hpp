// A report as documents carrying the same numbers: one self-contained HTML page
// (Vega-Lite charts rendered by vega, vega-lite and vega-embed inlined from npm, so it
// opens offline), Markdown tables, and CSVs for spreadsheets (the plan rows, and beside
// them the profiles' points, the balances and the runs' tables when there are any).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "src/report/report_data.hpp"

namespace moesim {

struct RenderedReport {
  std::string html, markdown, csv;
  std::string profile_csv;  // the profile views' points; empty when there are none
  std::string balance_csv;  // tokens per expert of the rows that carry a balance; empty when none
  // With run documents (empty when none): predicted, measured and error per run; time per
  // op category; rank 0's ops of one update, both sides; first-choice tokens per expert
  // per MoE layer.
  std::string runs_csv, run_categories_csv, run_timelines_csv, run_experts_csv;
};

// Where the chart libraries are: $MOESIM_CHART_LIBS, else the node_modules folder that
// scripts/setup fills beside the sources. Throws std::runtime_error (not bad input: the
// installation is incomplete) naming the missing file and `scripts/setup`.
std::string chart_library_dir();

// The Vega-Lite specs of one view: tokens/s, the time breakdown stacked by component,
// and peak memory per GPU against the GPU's capacity; when rows carry an expert balance,
// a heatmap of kept tokens per expert and the dropped fraction per row.
std::vector<nlohmann::ordered_json> view_specs(const ReportView& view);

// A profile view's charts: GEMM TFLOP/s, memory-bound GB/s and collective bus bandwidth,
// each against work or size on a log axis, measured points over the fit's line.
std::vector<nlohmann::ordered_json> profile_specs(const ProfileView& view);

// The predicted-vs-measured charts: predicted against measured step time per run with
// the y = x line, rank 0's timeline of one update per run (a row predicted, a row
// measured, bars coloured by op category; the first kMaxTimelines runs), and for MoE runs
// a heatmap of first-choice tokens per expert per MoE layer.
inline constexpr std::size_t kMaxTimelines = 8;
std::vector<nlohmann::ordered_json> run_specs(const RunView& view);

// The rows as data: what the HTML embeds (id "moesim-data") and the CSV and Markdown print.
nlohmann::ordered_json report_data_json(const Report& report);

RenderedReport render_report(const Report& report, const std::string& chart_libs);

}  // namespace moesim
