// Speed and size of the discrete-event engine (sim/), as Google Benchmark programs:
//  - LayeredDag: dependency-only tasks (a layered random DAG, 1,000 tasks per layer, two
//    dependencies per task, no resources, no flows); items_per_second = tasks per second;
//    counter bytes_per_task = workload + engine working memory + result, per task.
//  - LayeredDagOnStreams: the same DAG with every task on one of 64 in-order streams.
//  - FatTreeFlows: `concurrent` chains of transfers between random endpoints of a two-level
//    fat tree of 256 endpoints (40,000 flows in all, random sizes, so flows start and end
//    one at a time); items_per_second = flow starts + ends per second.
//  - FatTreeFlowsFullSolve: the same with every rate re-solved at every change (the
//    reference solver), to show what the incremental one saves.
//  - FatTreeAllToAll: one pairwise all-to-all among p endpoints of the same fat tree (flows
//    start and end in batches); items_per_second = flow starts + ends per second.
// Each simulates a workload built once, outside the timed loop. Build in Release and run
//   bench_engine --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sim/collectives.hpp"
#include "sim/engine.hpp"

namespace {

using namespace moesim::sim;

constexpr int kWidth = 1000;  // tasks per layer of the layered DAG

// "ep" + number, by appending (GCC 12 at -O3 misreports `"ep" + std::to_string(i)`).
std::string name(const char* prefix, int i) { return std::string(prefix).append(std::to_string(i)); }

// Layered DAG: layers of kWidth tasks; each task after the first layer depends on two
// random tasks of the layer before. Durations uniform in [1, 2) us, so ties are rare.
Workload layered_dag(std::int64_t tasks, int streams) {
  Workload w;
  w.reserve(static_cast<std::size_t>(tasks), static_cast<std::size_t>(2 * tasks));
  std::vector<ResourceId> res;
  for (int s = 0; s < streams; ++s) res.push_back(w.add_resource(name("stream", s)));
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> duration(1e-6, 2e-6);
  for (std::int64_t i = 0; i < tasks; ++i) {
    TaskOptions opt;
    if (streams > 0) opt.resource = res[static_cast<std::size_t>(i % streams)];
    const TaskId t = w.add_delay({}, duration(rng), opt);
    if (i >= kWidth) {
      const std::int64_t layer_start = (i / kWidth - 1) * kWidth;
      for (int k = 0; k < 2; ++k) {
        w.add_dependency(static_cast<TaskId>(layer_start + static_cast<std::int64_t>(rng() % kWidth)), t);
      }
    }
  }
  return w;
}

void run_dag(benchmark::State& state, int streams) {
  const std::int64_t tasks = state.range(0);
  const Workload w = layered_dag(tasks, streams);
  const Network net;
  std::size_t bytes = 0;
  double makespan = 0;
  for (auto _ : state) {
    Result r = simulate(w, net);
    makespan = r.makespan;
    bytes = w.memory_bytes() + r.stats.engine_bytes + r.memory_bytes();
    benchmark::DoNotOptimize(r.end.data());
  }
  state.SetItemsProcessed(state.iterations() * tasks);
  state.counters["bytes_per_task"] = static_cast<double>(bytes) / static_cast<double>(tasks);
  state.counters["makespan_s"] = makespan;
}

void LayeredDag(benchmark::State& state) { run_dag(state, 0); }
BENCHMARK(LayeredDag)->Arg(250'000)->Arg(1'000'000)->Arg(4'000'000)->Unit(benchmark::kMillisecond);

void LayeredDagOnStreams(benchmark::State& state) { run_dag(state, 64); }
BENCHMARK(LayeredDagOnStreams)->Arg(250'000)->Arg(1'000'000)->Arg(4'000'000)->Unit(benchmark::kMillisecond);

// Two-level fat tree (leaf-spine), 16 leaves of 16 endpoints and 16 spines, full
// bisection: every link 25 GB/s and 0.5 us each way. Endpoints are nodes 0..255.
struct FatTree {
  static constexpr int kLeaves = 16, kPerLeaf = 16, kSpines = 16;
  Network net;
  std::vector<LinkId> up, down;                 // endpoint <-> its leaf
  std::vector<std::vector<LinkId>> rise, fall;  // [leaf][spine]: leaf -> spine, spine -> leaf
  FatTree() {
    const double bw = 25e9, lat = 0.5e-6;
    for (int e = 0; e < kLeaves * kPerLeaf; ++e) net.add_node(name("ep", e));
    std::vector<NodeId> leaf, spine;
    for (int l = 0; l < kLeaves; ++l) leaf.push_back(net.add_node(name("leaf", l)));
    for (int s = 0; s < kSpines; ++s) spine.push_back(net.add_node(name("spine", s)));
    for (int e = 0; e < kLeaves * kPerLeaf; ++e) {
      up.push_back(net.add_link(static_cast<NodeId>(e), leaf[e / kPerLeaf], bw, lat));
      down.push_back(net.add_link(leaf[e / kPerLeaf], static_cast<NodeId>(e), bw, lat));
    }
    rise.assign(kLeaves, std::vector<LinkId>(kSpines));
    fall.assign(kLeaves, std::vector<LinkId>(kSpines));
    for (int l = 0; l < kLeaves; ++l) {
      for (int s = 0; s < kSpines; ++s) {
        rise[l][s] = net.add_link(leaf[l], spine[s], bw, lat);
        fall[l][s] = net.add_link(spine[s], leaf[l], bw, lat);
      }
    }
  }
  // Up, across a spine picked by hashing the pair (ECMP-like), and down.
  Path route(NodeId src, NodeId dst) const {
    const int ls = static_cast<int>(src) / kPerLeaf, ld = static_cast<int>(dst) / kPerLeaf;
    if (src == dst) return {};
    if (ls == ld) return {up[src], down[dst]};
    const int s = static_cast<int>((src * 7 + dst * 13) % kSpines);
    return {up[src], rise[ls][s], fall[ld][s], down[dst]};
  }
};

void run_flows(benchmark::State& state, Sharing sharing, int total_flows) {
  const int concurrent = static_cast<int>(state.range(0));
  const int per_chain = total_flows / concurrent;
  const FatTree ft;
  Workload w;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> size(256.0 * 1024, 4.0 * 1024 * 1024);
  for (int c = 0; c < concurrent; ++c) {
    TaskId prev = 0;
    for (int k = 0; k < per_chain; ++k) {
      const auto src = static_cast<NodeId>(rng() % 256);
      auto dst = static_cast<NodeId>(rng() % 255);
      if (dst >= src) ++dst;
      const TaskId t = w.add_transfer({}, size(rng), ft.route(src, dst));
      if (k > 0) w.add_dependency(prev, t);
      prev = t;
    }
  }
  const std::int64_t flows = static_cast<std::int64_t>(concurrent) * per_chain;
  EngineStats stats;
  for (auto _ : state) {
    Result r = simulate(w, ft.net, {.critical_path = true, .sharing = sharing});
    stats = r.stats;
    benchmark::DoNotOptimize(r.makespan);
  }
  state.SetItemsProcessed(state.iterations() * 2 * flows);
  state.counters["flows"] = static_cast<double>(flows);
  state.counters["solves"] = static_cast<double>(stats.rate_updates);
  // Flows given a rate per re-solve, and how many of them actually changed rate.
  state.counters["rated_per_solve"] =
      stats.rate_updates > 0 ? static_cast<double>(stats.flows_rerated) / static_cast<double>(stats.rate_updates) : 0;
  state.counters["changed_per_solve"] =
      stats.rate_updates > 0 ? static_cast<double>(stats.rate_changes) / static_cast<double>(stats.rate_updates) : 0;
}

void FatTreeFlows(benchmark::State& state) { run_flows(state, Sharing::kIncremental, 40'000); }
BENCHMARK(FatTreeFlows)->Arg(250)->Arg(500)->Arg(1000)->Arg(2000)->Unit(benchmark::kMillisecond);

void FatTreeFlowsFullSolve(benchmark::State& state) { run_flows(state, Sharing::kFull, 10'000); }
BENCHMARK(FatTreeFlowsFullSolve)->Arg(250)->Arg(1000)->Unit(benchmark::kMillisecond);

void FatTreeAllToAll(benchmark::State& state) {
  const int p = static_cast<int>(state.range(0));
  const FatTree ft;
  Workload w;
  CollectiveSpec spec;
  for (int i = 0; i < p; ++i) spec.endpoints.push_back(static_cast<NodeId>(i * (256 / p)));
  spec.bytes = 64.0 * 1024 * 1024;
  spec.expansion = pairwise_all_to_all([&ft](NodeId s, NodeId d) { return ft.route(s, d); });
  w.add_collective("a2a", std::move(spec));
  std::size_t flows = 0;
  for (auto _ : state) {
    Result r = simulate(w, ft.net);
    flows = r.flows.size();
    benchmark::DoNotOptimize(r.makespan);
  }
  state.SetItemsProcessed(state.iterations() * 2 * static_cast<std::int64_t>(flows));
  state.counters["flows"] = static_cast<double>(flows);
}
BENCHMARK(FatTreeAllToAll)->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace
