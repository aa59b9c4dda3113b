// What `moesim simulate` reports for one plan, whichever tier produced it. Field names of
// its JSON form are a contract (docs/simulate.md).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/gate.hpp"
#include "src/accounting/memory.hpp"

namespace moesim {

struct SimBreakdown {
  std::map<std::string, double> compute;         // seconds per iteration on the critical rank, by op category
  std::map<std::string, double> exposed_comm;    // seconds not hidden behind compute, by collective
  double bubble = 0;                             // pipeline fill and drain
  double optimizer = 0;
};

// Expert balance of one MoE layer's micro-batch under the routing model, fairseq's names.
struct SimBalance {
  bool present = false;        // false for dense models
  std::string routing;         // "uniform", "zipf:1.2", "trace:FILE"
  kernels::GateStats stats;
  bool has_entropy = true;
  std::int64_t capacity = 0;   // slots per expert per rank; 0 when dropless
  double dropped_fraction = 0; // of routed choices
  double max_tokens_per_rank = 0;   // expert token slots the most-loaded EP rank computes
  double mean_tokens_per_rank = 0;
  int max_rank = 0;                 // its index in the EP group
  std::vector<double> demand_per_expert;  // choices routed to each expert (one micro-batch, one rank, one layer)
  std::vector<double> kept_per_expert;    // of those, within capacity
};

struct SimResult {
  std::string mode;          // "analytic" (or "event" for the discrete-event tier)
  double iteration_s = 0;
  double tokens = 0;         // per iteration
  double wps = 0;            // tokens per second (fairseq's wps)
  double wps_per_gpu = 0;
  double tflops_per_gpu = 0;  // model FLOPs (routed tokens, no recomputation) per second per GPU
  double mfu = 0;             // tflops_per_gpu over the GPU's peak in the plan's precision
  bool fits = false;
  StageMemory memory;        // the rank that needs the most
  double gpu_memory = 0;
  SimBreakdown breakdown;
  SimBalance balance;
};

}  // namespace moesim
