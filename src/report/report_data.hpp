// What a report shows, read from the documents other commands print: `search --json`
// (a plan-vs-plan view of its ranked plans and baselines), `simulate --json` (grouped
// by model: the same plan on several clusters is a GPU-vs-GPU view, on one cluster under
// several routings a routing view, different plans a plan-vs-plan view) and profiles
// (measured points against their fits).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace moesim {

// One bar of a comparison: a plan on a cluster under a profile, as predicted.
struct ReportRow {
  std::string label;   // what tells the rows of a view apart
  std::string key;     // a short name for it, for table headers: "#1", "baseline 1", "dgx-a100"
  std::string source;  // the input file
  std::string model, cluster, profile, plan;  // plan in the inline short form
  double iteration_s = 0, wps = 0, mfu = 0;
  double peak_memory = 0, gpu_memory = 0;  // bytes per GPU
  // Seconds per iteration by component, named as the side-by-side tables name them:
  // "compute: attention", "exposed comm: ep_all_to_all", "pipeline bubble", "optimizer step".
  std::vector<std::pair<std::string, double>> breakdown;
  // Expert balance of one micro-batch of one rank (MoE results that carry it): the
  // routing model, and per expert the choices routed to it and those kept.
  std::string routing;
  std::vector<double> demand, kept;
  double dropped_fraction = 0;
};

struct ReportView {
  std::string kind;   // "plans", "gpus" (one plan, several clusters) or "routings" (one plan and cluster, several routings)
  std::string title;
  std::vector<ReportRow> rows;
};

// One point of a profile's view: what was measured at x, and what its fit says there.
struct ProfilePoint {
  std::string chart;   // "gemm" (TFLOP/s against FLOPs), "memory" (GB/s against bytes),
                       // "collective" (bus bandwidth GB/s against message bytes)
  std::string series;  // "gemm_bf16", "all_to_all, 2 ranks (mpi)", ...
  double x = 0;        // FLOPs or bytes
  double measured = 0; // achieved rate, in the chart's unit
  double fitted = 0;   // the profile's fit at x, same unit
};

// A profile: its measured (or published) kernel and collective tables against its fits.
struct ProfileView {
  std::string title, source;
  std::vector<ProfilePoint> points;
};

struct Report {
  std::string title;
  std::vector<std::string> inputs;
  std::vector<ReportView> views;
  std::vector<ProfileView> profiles;
};

// Reads every input; a file that is missing, not JSON, or not one of the documents above
// is an InputError naming it.
Report build_report(const std::vector<std::string>& files);

}  // namespace moesim
