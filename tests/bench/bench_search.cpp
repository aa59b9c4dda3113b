// Speed of the plan search: plans per second through the screening tier on one core, and
// whole searches (enumerate, routing samples, screen, re-rank, explain) for seed 001's
// models on their clusters. Run from the repository root (it reads configs/, profiles/).
// The MPI speed-up is measured with the CLI under mpirun (docs/search.md).
#include <benchmark/benchmark.h>

#include <map>

#include "src/comm/self_communicator.hpp"
#include "src/model/model_json.hpp"
#include "src/search/search.hpp"

namespace {

using namespace moesim;

struct Case {
  ModelSpec model;
  ClusterSpec cluster;
  Profile profile;
  SearchSpace space;
};

// 0: seed 001's 4.1B on one DGX A100 (8 GPUs); 1: its 142B on eight (64 GPUs). The
// non-searched fields and the batch come from the seed's own plan.
Case make_case(int which) {
  Case c;
  c.model = load_model(which == 0 ? "configs/models/fairseq-moe-4.1b.json" : "configs/models/fairseq-moe-142b.json");
  c.cluster = load_cluster(which == 0 ? "configs/clusters/dgx-a100.json" : "configs/clusters/dgx-a100-8node.json");
  c.profile = load_profile(default_profile_path(c.cluster));
  c.space.base = load_plan(which == 0 ? "configs/plans/fairseq-moe-4.1b-8gpu.json"
                                      : "configs/plans/fairseq-moe-142b-64gpu.json");
  return c;
}

// The screening tier alone, over every enumerated plan (routing samples taken once,
// outside the timing, as the search does).
void BM_ScreenPlans(benchmark::State& state) {
  const Case c = make_case(static_cast<int>(state.range(0)));
  const std::vector<Plan> plans = enumerate_plans(c.model, c.cluster, c.space);
  std::map<int, ExpertLoad> loads;
  for (const Plan& p : plans)
    if (!loads.contains(p.mbs))
      loads.emplace(p.mbs, route_tokens(c.model, parse_routing("uniform"), static_cast<std::int64_t>(p.mbs) * c.model.seq_len));
  std::size_t fitting = 0;
  for (auto _ : state) {
    fitting = 0;
    for (const Plan& p : plans)
      fitting += screen_plan(c.model, p, c.cluster, c.profile, &loads.at(p.mbs), c.cluster.gpu_memory_bytes).fits;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * plans.size()));
  state.counters["plans"] = static_cast<double>(plans.size());
  state.counters["fitting"] = static_cast<double>(fitting);
}
BENCHMARK(BM_ScreenPlans)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// A whole search in one process, as `moesim search` runs it.
void BM_FullSearch(benchmark::State& state) {
  const Case c = make_case(static_cast<int>(state.range(0)));
  SelfCommunicator self;
  SearchResult r;
  for (auto _ : state) r = search_plans(c.model, c.cluster, c.profile, parse_routing("uniform"), c.space, SearchOptions{}, self);
  state.counters["plans"] = static_cast<double>(r.enumerated);
  state.counters["reranked"] = static_cast<double>(r.reranked);
}
BENCHMARK(BM_FullSearch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace
