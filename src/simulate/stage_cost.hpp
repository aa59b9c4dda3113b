// What one pipeline stage's representative rank spends per micro-batch (compute by op
// category, in-line tensor- and expert-parallel communication) and per iteration
// (data-parallel reduction, FSDP gathers, optimizer), priced from the profile. Both
// simulator tiers start from these; they differ in how they schedule them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "src/accounting/params.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/result.hpp"

namespace moesim {

struct StageTime {
  double forward = 0, backward = 0, recompute = 0;
  std::map<std::string, double> compute;  // per micro-batch, by category (fwd + bwd + recompute)
  std::map<std::string, double> comm;     // per micro-batch, in line with compute
  double comm_total() const {
    double c = 0;
    for (const auto& [name, s] : comm) c += s;
    return c;
  }
  double micro_batch() const { return forward + backward + recompute + comm_total(); }
};

// `load`: the routing of one micro-batch (nullptr: the mean load).
StageTime stage_time(const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof,
                     const GroupLayout& groups, const StageParams& stage, const ExpertLoad* load);

// One collective of a stage's data-parallel work: over the data-parallel group (dense
// weights) or the expert-data-parallel group (expert weights), on `bytes` as
// comm_model.hpp sizes them.
struct DpCollective {
  Collective op = Collective::all_reduce;
  bool expert = false;
  double bytes = 0;
};
// The gradient reduction, in order: all-reduce (ZeRO 0, 1) or reduce-scatter (ZeRO 2, 3),
// then the gathers of the updated weight shards (ZeRO 1, 2).
std::vector<DpCollective> grad_reduce_collectives(const Plan& p, const StageParams& stage);
// ZeRO 3: the gathers of the stage's weights before each pass.
std::vector<DpCollective> fsdp_gather_collectives(const Plan& p, const StageParams& stage);

// One stage's per-iteration data-parallel costs.
struct DpCosts {
  double grad_reduce = 0;  // gradient all-reduce (or reduce-scatter under ZeRO 2/3), plus post-step gathers (ZeRO 1/2)
  bool reduce_scatter = false;
  double fsdp_gather = 0;  // ZeRO 3: one gather of the stage's weights (before forward, again before backward)
  double optimizer = 0;
};
DpCosts dp_costs(const Plan& p, const ClusterSpec& c, const Profile& prof, const GroupLayout& groups,
                 const StageParams& stage);

// The balance figures of `load` for plan `p` (nothing for a null load).
SimBalance balance_of(const ExpertLoad* load, const Plan& p);

// Fills throughput, FLOP rate, MFU and memory of `r` from its iteration time.
void finish_result(SimResult& r, const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof);

}  // namespace moesim
