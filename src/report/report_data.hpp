// What a report shows, read from the documents other commands print: `search --json`
// (a plan-vs-plan view of its ranked plans and baselines), `simulate --json` (grouped
// by model: the same plan on several clusters is a GPU-vs-GPU view, on one cluster under
// several routings a routing view, different plans a plan-vs-plan view), profiles
// (measured points against their fits) and `run --compare --json` (the simulator's
// prediction of a run beside what the run measured).
#pragma once

#include <optional>
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

// A figure a run predicted and measured; error = (predicted - measured) / measured, as the
// run document gives it.
struct Predicted {
  double predicted = 0, measured = 0, error = 0;
};

// Time per kind of op ("forward", "backward", "dp_grad_reduce", "optimizer", ...) in one
// update of the first stage (rank 0), in seconds; no error when nothing was measured.
struct CategoryTime {
  std::string category;
  double predicted_s = 0, measured_s = 0;
  std::optional<double> error;
};

// One op of rank 0's update, in milliseconds from the update's first op: the simulator's
// iteration and the run's last update use the same names (F<stage>.<mb>, B<stage>.<mb>,
// grad_reduce <stage>, optimizer <stage>).
struct TimelineOp {
  std::string name, category;
  double start_ms = 0, duration_ms = 0;
};

// One `moesim run --compare --json` document: a plan trained for real beside the
// simulator's event tier on the same model, plan and routing.
struct RunRow {
  std::string label;   // the plan in its compact inline form ("dp=2,ep=2,mbs=4,gbs=16")
  std::string key;     // "run 1", "run 2", ...
  std::string source;  // the input file
  std::string model, device, cluster, profile, plan;  // plan in the short form other views use
  int ranks = 0;
  Predicted step_s, wps, tflops_per_gpu, mfu, peak_bytes;  // peak_bytes per rank
  std::vector<CategoryTime> categories;
  int timeline_rank = 0;
  std::vector<TimelineOp> predicted_ops, measured_ops;
  // Tokens whose first choice was each expert, summed over the run, per MoE layer (in the
  // order of the model's MoE layers); empty for a dense model.
  std::vector<std::vector<double>> expert1_per_layer;
};

struct RunView {
  std::string title;
  std::vector<RunRow> rows;
  double median_abs_step_error = 0;  // the median over rows of |step_s.error|
};

struct Report {
  std::string title;
  std::vector<std::string> inputs;
  std::vector<ReportView> views;
  std::vector<ProfileView> profiles;
  std::optional<RunView> runs;  // every run document of the inputs, in input order
};

// Reads every input; a file that is missing, not JSON, or not one of the documents above
// (a run document without "compare" included) is an InputError naming it and the field.
Report build_report(const std::vector<std::string>& files);

}  // namespace moesim
