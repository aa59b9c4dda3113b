// The event tier; see event.hpp.
#include "src/simulate/event.hpp"

#include <algorithm>

#include "sim/engine.hpp"
#include "sim/network.hpp"
#include "sim/trace.hpp"
#include "src/accounting/memory.hpp"
#include "src/accounting/params.hpp"
#include "src/simulate/pipeline_lowering.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/stage_cost.hpp"

namespace moesim {
namespace {

struct Run {
  sim::Result result;
  LoweredIteration lowered;
};

Run run(const std::vector<StageWork>& stages, Schedule schedule, int m, int vpp, bool with_dp, bool with_fsdp,
        bool critical_path) {
  std::vector<StageWork> s = stages;
  for (StageWork& w : s) {
    if (!with_dp) w.grad_reduce = 0;
    if (!with_fsdp) w.fsdp_gather = 0;
  }
  Run r{{}, lower_iteration(s, schedule, m, with_dp || with_fsdp, vpp)};
  sim::Options o;
  o.critical_path = critical_path;
  r.result = sim::simulate(r.lowered.workload, sim::Network{}, o);
  return r;
}

}  // namespace

SimResult simulate_event(const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof,
                         const ExpertLoad* routing, const std::string& trace_path) {
  SimResult r;
  r.mode = "event";
  const ExpertLoad* load = m.is_moe() ? routing : nullptr;
  r.balance = balance_of(load, p);
  const GroupLayout groups = group_layout(p, c);
  const auto params = params_per_stage(m, p);
  const int mb = static_cast<int>(p.micro_batches());

  std::vector<StageTime> times;
  std::vector<StageWork> stages;
  std::vector<DpCosts> dps;
  for (const StageParams& s : params) {
    StageTime t = stage_time(m, p, c, prof, groups, s, load);
    const DpCosts d = dp_costs(p, c, prof, groups, s);
    // Tensor- and expert-parallel collectives run in line, half in each pass; the
    // pipeline's sends become tasks of their own.
    double p2p = 0, inline_comm = 0;
    for (const auto& [name, sec] : t.comm) (name == "pp_send_recv" ? p2p : inline_comm) += sec;
    StageWork w;
    w.forward = t.forward + inline_comm / 2;
    w.backward = t.backward + t.recompute + inline_comm / 2;
    w.send_forward = w.send_backward = p2p / 2;
    w.grad_reduce = d.grad_reduce;
    w.buckets = std::max<int>(1, static_cast<int>(s.layers.size()));
    w.fsdp_gather = p.zero == 3 ? d.fsdp_gather : 0;
    w.optimizer = d.optimizer;
    times.push_back(std::move(t));
    stages.push_back(w);
    dps.push_back(d);
  }
  // Three runs tell the costs apart: the pipeline alone, with FSDP gathers, with the
  // gradient reduction too (the real timeline).
  const Run bare = run(stages, p.schedule, mb, p.vpp, false, false, false);
  const Run gathers = run(stages, p.schedule, mb, p.vpp, false, true, false);
  const Run full = run(stages, p.schedule, mb, p.vpp, true, true, true);
  r.iteration_s = full.result.makespan;

  // The breakdown is the busiest stage's: its compute and in-line communication, the rest
  // of the pipeline-only timeline as bubble, and what each data-parallel cost added.
  std::size_t busiest = 0;
  for (std::size_t s = 0; s < stages.size(); ++s)
    if (bare.result.resources[bare.lowered.compute[s]].busy > bare.result.resources[bare.lowered.compute[busiest]].busy)
      busiest = s;
  const StageTime& t = times[busiest];
  for (const auto& [k, v] : t.compute) r.breakdown.compute[k] = v * mb;
  for (const auto& [k, v] : t.comm)
    if (k != "pp_send_recv") r.breakdown.exposed_comm[k] = v * mb;
  r.breakdown.optimizer = stages[busiest].optimizer;
  r.breakdown.bubble = bare.result.makespan - bare.result.resources[bare.lowered.compute[busiest]].busy;
  if (gathers.result.makespan > bare.result.makespan)
    r.breakdown.exposed_comm["fsdp_all_gather"] = gathers.result.makespan - bare.result.makespan;
  if (full.result.makespan > gathers.result.makespan)
    r.breakdown.exposed_comm[dps[busiest].reduce_scatter ? "dp_reduce_scatter" : "dp_all_reduce"] =
        full.result.makespan - gathers.result.makespan;
  if (!trace_path.empty()) sim::write_chrome_trace(trace_path, full.lowered.workload, sim::Network{}, full.result);
  finish_result(r, m, p, c, prof);
  // Activations held at the peak, counted on the timeline rather than taken from the
  // schedule's closed form.
  r.memory = peak_memory(m, p, peak_in_flight(full.lowered, full.result));
  r.fits = r.memory.bytes.total() <= c.gpu_memory_bytes;
  return r;
}

}  // namespace moesim
