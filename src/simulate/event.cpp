// The event tier; see event.hpp.
#include "src/simulate/event.hpp"

#include <algorithm>
#include <memory>

#include "sim/engine.hpp"
#include "sim/network.hpp"
#include "sim/trace.hpp"
#include "src/accounting/memory.hpp"
#include "src/accounting/params.hpp"
#include "src/simulate/collective_flows.hpp"
#include "src/simulate/pipeline_lowering.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/stage_cost.hpp"

namespace moesim {
namespace {

struct Run {
  sim::Result result;
  LoweredIteration lowered;
};

// Stage s's data-parallel groups over the dense weights' replicas (one per tensor-parallel
// rank, spanning dp x cp) or, for expert weights, its expert-data-parallel groups (one per
// expert tensor-parallel rank and expert-parallel rank), in Megatron-Core's rank order
// (placement.hpp): rank = local + stage * (tp cp dp).
std::vector<std::vector<int>> dp_groups(const Plan& p, int s, bool expert) {
  std::vector<std::vector<int>> out;
  const int stage_ranks = p.tp * p.cp * p.dp;
  const int t_ways = expert ? p.expert_tp() : p.tp, e_ways = expert ? p.ep : 1;
  const int size = expert ? p.edp() : p.dense_replicas();
  for (int t = 0; t < t_ways; ++t)
    for (int e = 0; e < e_ways; ++e) {
      std::vector<int> g;
      for (int j = 0; j < size; ++j) g.push_back(t + t_ways * (e + e_ways * j) + stage_ranks * s);
      out.push_back(std::move(g));
    }
  return out;
}

// Every rank of stage `from` sending to its counterpart on stage `to`.
std::vector<std::vector<int>> stage_pairs(const Plan& p, int from, int to) {
  std::vector<std::vector<int>> out;
  const int stage_ranks = p.tp * p.cp * p.dp;
  for (int r = 0; r < stage_ranks; ++r) out.push_back({r + stage_ranks * from, r + stage_ranks * to});
  return out;
}

// Stage s's communication as flows over the cluster network (collective_flows.hpp).
void attach_flows(StageWork& w, const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof,
                  const ClusterNetwork& net, const StageParams& stage) {
  auto chain = [&](const std::vector<DpCollective>& list) -> CommFlows {
    if (list.empty()) return {};
    auto phases = std::make_shared<std::vector<PreparedFlows>>();
    for (const DpCollective& k : list)
      phases->push_back(prepare_collective_flows(net, c, prof, {k.op, dp_groups(p, stage.stage, k.expert), k.bytes}));
    return [phases](sim::StepBuilder& b, double share) {
      sim::StepRef last = sim::kNoStep;
      for (const PreparedFlows& f : *phases) last = emit_collective_flows(b, f, share, last);
      return last;
    };
  };
  w.grad_reduce_flows = chain(grad_reduce_collectives(p, stage));
  w.fsdp_gather_flows = chain(fsdp_gather_collectives(p, stage));
  if (p.pp > 1) {
    // Activations forward and gradients back are the same size (stage_cost.cpp).
    const double bytes = bytes_of(p.precision) * attention_tokens(p, m) * static_cast<double>(m.d_model) / p.tp;
    auto send = [&](int to) -> CommFlows {
      auto f = std::make_shared<const PreparedFlows>(
          prepare_collective_flows(net, c, prof, {Collective::send_recv, stage_pairs(p, stage.stage, to), bytes}));
      return [f](sim::StepBuilder& b, double share) { return emit_collective_flows(b, *f, share); };
    };
    w.send_forward_flows = send((stage.stage + 1) % p.pp);
    w.send_backward_flows = send((stage.stage + p.pp - 1) % p.pp);
  }
}

Run run(const std::vector<StageWork>& stages, const sim::Network& network, Schedule schedule, int m, int vpp,
        bool with_dp, bool with_fsdp, bool critical_path) {
  std::vector<StageWork> s = stages;
  for (StageWork& w : s) {
    if (!with_dp) w.grad_reduce = 0;
    if (!with_fsdp) w.fsdp_gather = 0;
  }
  Run r{{}, lower_iteration(s, schedule, m, with_dp || with_fsdp, vpp)};
  sim::Options o;
  o.critical_path = critical_path;
  r.result = sim::simulate(r.lowered.workload, network, o);
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
  const ClusterNetwork net(c, prof);

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
    attach_flows(w, m, p, c, prof, net, s);
    times.push_back(std::move(t));
    stages.push_back(w);
    dps.push_back(d);
  }
  // Three runs tell the costs apart: the pipeline alone, with FSDP gathers, with the
  // gradient reduction too (the real timeline).
  const Run bare = run(stages, net.network(), p.schedule, mb, p.vpp, false, false, false);
  const Run gathers = run(stages, net.network(), p.schedule, mb, p.vpp, false, true, false);
  const Run full = run(stages, net.network(), p.schedule, mb, p.vpp, true, true, true);
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
  if (!trace_path.empty()) sim::write_chrome_trace(trace_path, full.lowered.workload, net.network(), full.result);
  finish_result(r, m, p, c, prof);
  // Activations held at the peak, counted on the timeline rather than taken from the
  // schedule's closed form.
  r.memory = peak_memory(m, p, peak_in_flight(full.lowered, full.result));
  r.fits = r.memory.bytes.total() <= c.gpu_memory_bytes;
  return r;
}

}  // namespace moesim
