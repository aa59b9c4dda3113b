// Invariants over random workloads that mix everything (delays, transfers sharing links,
// collectives, in-order and priority queues with capacities, zero durations): dependencies
// respected, capacities never exceeded, streams in order, durations and flow lower bounds
// kept, link statistics consistent, and a critical path that covers the makespan.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "sim/collectives.hpp"
#include "sim/engine.hpp"
#include "sim/error.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

TEST(Invariants, HoldOnRandomMixedWorkloads) {
  std::mt19937_64 rng(31337);
  int completed = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const int p = 2 + static_cast<int>(rng() % 7);
    const Network net =
        testing::star(p, 1e9 * static_cast<double>(1 + rng() % 3), 1e-6 * static_cast<double>(rng() % 3));
    Workload w;
    std::vector<ResourceId> res;
    const int n_res = 1 + static_cast<int>(rng() % 6);
    for (int r = 0; r < n_res; ++r) {
      const auto order = rng() % 2 ? QueueOrder::kInOrder : QueueOrder::kPriority;
      res.push_back(w.add_resource(testing::concat("r", r),
                                   {.capacity = 1 + static_cast<std::uint32_t>(rng() % 3), .order = order}));
    }
    const int n = 20 + static_cast<int>(rng() % 150);
    for (int i = 0; i < n; ++i) {
      TaskOptions opt;
      // Queues go by (priority, id) and dependencies only forward in id: a priority growing
      // with the id keeps the two orders consistent. Pools get random priorities below.
      opt.priority = i;
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 5) {
        if (rng() % 3) opt.resource = res[rng() % n_res];
        if (opt.resource != kNoResource && w.resource_info(opt.resource).order == QueueOrder::kPriority) {
          opt.priority = static_cast<int>(rng() % 5);
        }
        w.add_delay(testing::concat("d", i), rng() % 4 == 0 ? 0.0 : static_cast<double>(rng() % 1000) * 1e-6, opt);
      } else if (kind < 9) {
        if (rng() % 2) opt.resource = res[rng() % n_res];
        const auto s = static_cast<NodeId>(rng() % p);
        const auto d = static_cast<NodeId>((s + 1 + rng() % (p - 1)) % p);
        w.add_transfer(testing::concat("x", i), static_cast<double>(rng() % 4) * 1e5, net.shortest_path(s, d), opt);
      } else {
        CollectiveSpec spec;
        for (int r = 0; r < n_res; ++r) {
          if (rng() % 2) spec.parties.push_back(res[r]);
        }
        for (int e = 0; e < p; ++e) {
          if (rng() % 2 || e < 2) spec.endpoints.push_back(static_cast<NodeId>(e));
        }
        spec.bytes = static_cast<double>(rng() % 8) * 1e5;
        spec.expansion =
            rng() % 2 ? ring_all_reduce(shortest_path_routes(net)) : direct_all_to_all(shortest_path_routes(net));
        w.add_collective(testing::concat("c", i), spec, opt);
      }
    }
    for (int j = 1; j < n; ++j) {
      for (int k = 0; k < 2; ++k) {
        if (rng() % 3 == 0) continue;
        const auto i = static_cast<TaskId>(rng() % j);
        w.add_dependency(i, static_cast<TaskId>(j));
      }
    }
    Result r;
    try {
      r = simulate(w, net);
    } catch (const Error& e) {
      // Not expected with these priorities; if it happens it must at least be a cycle.
      ADD_FAILURE() << "trial " << trial << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << "trial " << trial << ": " << e.what();
      continue;
    }
    const double eps = 1e-12;
    // Dependencies.
    for (const Dependency& d : w.dependencies()) EXPECT_GE(r.start[d.after], r.end[d.before]) << "trial " << trial;
    // Durations and lower bounds; every task ran.
    double latest = 0;
    for (TaskId t = 0; t < w.task_count(); ++t) {
      ASSERT_GE(r.start[t], 0.0);
      EXPECT_GE(r.end[t], r.start[t]);
      latest = std::max(latest, r.end[t]);
      if (w.kind(t) == TaskKind::kDelay) {
        EXPECT_EQ(r.end[t], r.start[t] + w.value(t));
      }
      if (w.kind(t) == TaskKind::kTransfer && !w.path(t).empty()) {
        double lat = 0, narrow = 1e300;
        for (const LinkId l : w.path(t)) {
          lat += net.link(l).latency;
          narrow = std::min(narrow, net.link(l).bandwidth);
        }
        EXPECT_GE(r.end[t] - r.start[t], (lat + w.value(t) / narrow) * (1 - eps)) << "trial " << trial;
      }
    }
    EXPECT_EQ(r.makespan, latest);
    // Capacities and stream order.
    std::vector<std::vector<TaskId>> on(n_res);
    for (TaskId t = 0; t < w.task_count(); ++t) {
      if (w.resource(t) != kNoResource) on[w.resource(t)].push_back(t);
      if (w.kind(t) == TaskKind::kCollective) {
        for (const ResourceId q : w.collective(t).parties) on[q].push_back(t);
      }
    }
    for (int q = 0; q < n_res; ++q) {
      const Resource& info = w.resource_info(res[q]);
      std::vector<std::pair<double, int>> edges;  // +1 at start, -1 at end; ends first on ties
      for (const TaskId t : on[q]) {
        edges.emplace_back(r.start[t], +1);
        edges.emplace_back(r.end[t], -1);
      }
      std::sort(edges.begin(), edges.end());
      int running = 0;
      for (const auto& [time, delta] : edges) {
        running += delta;
        EXPECT_LE(running, static_cast<int>(info.capacity)) << "trial " << trial << " resource " << q;
      }
      if (info.order == QueueOrder::kInOrder) {
        std::vector<TaskId> queue = on[q];
        std::stable_sort(queue.begin(), queue.end(), [&](TaskId a, TaskId b) {
          return w.priority(a) != w.priority(b) ? w.priority(a) < w.priority(b) : a < b;
        });
        for (std::size_t k = 1; k < queue.size(); ++k) EXPECT_LE(r.start[queue[k - 1]], r.start[queue[k]]);
      }
      EXPECT_LE(r.resources[res[q]].busy, r.makespan * (1 + eps));
    }
    // Links: bytes add up, never more than bandwidth x makespan.
    std::vector<double> bytes(net.link_count(), 0.0);
    for (const FlowRecord& f : r.flows) {
      EXPECT_GE(f.end, f.data_start);
      EXPECT_GE(f.data_start, f.start);
      const Path path = f.step == kNoStep ? Path(w.path(f.task).begin(), w.path(f.task).end()) : Path{};
      for (const LinkId l : path) bytes[l] += f.bytes;
    }
    for (LinkId l = 0; l < net.link_count(); ++l) {
      EXPECT_LE(r.links[l].utilisation, 1 + 1e-9);
      EXPECT_GE(r.links[l].bytes, bytes[l]);  // collective steps add to what transfer tasks moved
    }
    // The critical path.
    const CriticalPath& cp = r.critical_path;
    if (!cp.steps.empty()) {
      EXPECT_EQ(cp.steps.front().start, 0.0);
      EXPECT_EQ(cp.length, r.makespan);
      for (std::size_t k = 1; k < cp.steps.size(); ++k) EXPECT_EQ(cp.steps[k].start, cp.steps[k - 1].end);
    }
    EXPECT_EQ(r.stats.sharing_fallbacks, 0u);
    if (::testing::Test::HasFailure()) FAIL() << "trial " << trial;
    ++completed;
  }
  EXPECT_EQ(completed, 150);
}

}  // namespace
}  // namespace moesim::sim
