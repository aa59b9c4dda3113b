// Speed of the simulator's analytic tier and of the routing sample it takes: one plan's
// prediction must cost well under a millisecond for the search to screen thousands.
// Run from the repository root (it reads configs/ and profiles/).
#include <benchmark/benchmark.h>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/event.hpp"

namespace {

using namespace moesim;

struct Case {
  ModelSpec model;
  ClusterSpec cluster;
  Plan plan;
  Profile profile;
};

// 0: seed 001's 4.1B on 8 A100; 1: its 142B on 64 A100 with the seed's plan; 2: that
// plan widened to 1,024 A100 (128 nodes, dp 1024, ep 64).
Case make_case(int which) {
  Case c;
  c.profile = load_profile("profiles/a100-sxm4-40gb.json");
  if (which == 0) {
    c.model = load_model("configs/models/fairseq-moe-4.1b.json");
    c.cluster = load_cluster("configs/clusters/dgx-a100.json");
    c.plan = load_plan("configs/plans/fairseq-moe-4.1b-8gpu.json");
  } else {
    c.model = load_model("configs/models/fairseq-moe-142b.json");
    c.cluster = load_cluster("configs/clusters/dgx-a100-8node.json");
    c.plan = load_plan("configs/plans/fairseq-moe-142b-64gpu.json");
    if (which == 2) {
      c.cluster.nodes = 128;
      c.plan.dp = 1024;
      c.plan.gbs = 12 * 1024;
    }
  }
  return c;
}

void BM_AnalyticPlan(benchmark::State& state) {
  const Case c = make_case(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(simulate_analytic(c.model, c.plan, c.cluster, c.profile).iteration_s);
  state.counters["gpus"] = c.plan.world();
}
BENCHMARK(BM_AnalyticPlan)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

// The event tier: the same plans lowered onto the engine (three runs: the pipeline alone,
// with FSDP gathers, with the gradient reduction), and a pipelined plan with many
// micro-batches: 4.1B on 8 A100 as dp 2 x pp 4 with 64 micro-batches (arg 3).
void BM_EventPlan(benchmark::State& state) {
  Case c = make_case(state.range(0) == 3 ? 0 : static_cast<int>(state.range(0)));
  if (state.range(0) == 3) c.plan = parse_inline_plan("dp=2,pp=4,mbs=1,gbs=128");
  for (auto _ : state) benchmark::DoNotOptimize(simulate_event(c.model, c.plan, c.cluster, c.profile).iteration_s);
  state.counters["gpus"] = c.plan.world();
  state.counters["micro_batches"] = static_cast<double>(c.plan.micro_batches());
}
BENCHMARK(BM_EventPlan)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Unit(benchmark::kMicrosecond);

// The routing sample (one micro-batch of one rank through the real gate), taken once per
// model and micro-batch size, then shared by every plan that has them.
void BM_RouteTokens(benchmark::State& state) {
  const Case c = make_case(static_cast<int>(state.range(0)));
  const std::int64_t tokens = static_cast<std::int64_t>(c.plan.mbs) * c.model.seq_len;
  const RoutingSpec zipf = parse_routing("zipf:1");
  for (auto _ : state) benchmark::DoNotOptimize(route_tokens(c.model, zipf, tokens).kept.data());
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_RouteTokens)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
