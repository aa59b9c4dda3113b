// What a report shows, read from the documents other commands print: `search --json`
// (a plan-vs-plan view of its ranked plans and baselines) and `simulate --json` (grouped
// by model: the same plan on several clusters is a GPU-vs-GPU view, different plans a
// plan-vs-plan view).
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
};

struct ReportView {
  std::string kind;   // "plans" or "gpus"
  std::string title;
  std::vector<ReportRow> rows;
};

struct Report {
  std::string title;
  std::vector<std::string> inputs;
  std::vector<ReportView> views;
};

// Reads every input; a file that is missing, not JSON, or not one of the documents above
// is an InputError naming it.
Report build_report(const std::vector<std::string>& files);

}  // namespace moesim
