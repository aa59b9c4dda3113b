// Closed-form iteration time; the model is stated in analytic.hpp.
#include "src/simulate/analytic.hpp"

#include <algorithm>

#include "src/accounting/params.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/stage_cost.hpp"

namespace moesim {

SimResult simulate_analytic(const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof,
                            const ExpertLoad* routing) {
  SimResult r;
  r.mode = "analytic";
  const ExpertLoad* load = m.is_moe() ? routing : nullptr;
  r.balance = balance_of(load, p);
  const GroupLayout groups = group_layout(p, c);
  const auto stages = params_per_stage(m, p);
  const double mb = static_cast<double>(p.micro_batches());

  // The slowest stage sets the pipeline's pace.
  StageTime slow;
  const StageParams* slow_stage = &stages[0];
  for (const StageParams& s : stages) {
    StageTime t = stage_time(m, p, c, prof, groups, s, load);
    if (t.micro_batch() > slow.micro_batch()) {
      slow = t;
      slow_stage = &s;
    }
  }
  const double per_mb = slow.micro_batch();
  const double fill = static_cast<double>(p.pp - 1) / p.vpp;
  double iteration = (mb + fill) * per_mb;
  r.breakdown.bubble = fill * per_mb;
  for (const auto& [k, v] : slow.compute) r.breakdown.compute[k] = v * mb;
  for (const auto& [k, v] : slow.comm) r.breakdown.exposed_comm[k] = v * mb;

  // Gradients and, under FSDP, weights over the data-parallel groups. Reduction overlaps
  // the last micro-batch's backward (bucketed, as DDP and FSDP do).
  const DpCosts dp = dp_costs(p, c, prof, groups, *slow_stage);
  const double exposed_dp = std::max(0.0, dp.grad_reduce - slow.backward);
  if (exposed_dp > 0) r.breakdown.exposed_comm[dp.reduce_scatter ? "dp_reduce_scatter" : "dp_all_reduce"] = exposed_dp;
  iteration += exposed_dp;
  if (p.zero == 3) {
    // Weights gathered before forward and again before backward, per micro-batch,
    // prefetched under that micro-batch's compute.
    const double exposed = mb * std::max(0.0, 2 * dp.fsdp_gather - (slow.forward + slow.backward + slow.recompute));
    if (exposed > 0) r.breakdown.exposed_comm["fsdp_all_gather"] = exposed;
    iteration += exposed;
  }
  r.breakdown.optimizer = dp.optimizer;
  iteration += r.breakdown.optimizer;
  r.iteration_s = iteration;
  finish_result(r, m, p, c, prof);
  return r;
}

}  // namespace moesim
