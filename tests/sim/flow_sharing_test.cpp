// Flow-level link sharing: the closed forms of the issue (n equal flows on a link, two links
// in series, a textbook max-min case) and the incremental solver against the reference.
#include "sim/flow_sharing.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "sim/engine.hpp"
#include "sim/error.hpp"
#include "sim/max_min.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

using testing::report;

constexpr double kB = 1073741824.0;       // 2^30 bytes/s
constexpr double kAlpha = 1.0 / 1048576;  // 2^-20 s

TEST(FlowSharing, EqualFlowsOnOneLinkFinishAtNSOverBPlusLatency) {
  const double S = 1048576.0;  // 2^20 bytes
  for (const int n : {1, 2, 3, 4, 5, 7, 8, 16, 100, 128}) {
    Network net;
    const NodeId a = net.add_node("a"), b = net.add_node("b");
    const LinkId l = net.add_link(a, b, kB, kAlpha);
    Workload w;
    for (int i = 0; i < n; ++i) w.add_transfer(testing::concat("f", i), S, std::vector<LinkId>{l});
    for (const Sharing mode : {Sharing::kIncremental, Sharing::kFull}) {
      const Result r = simulate(w, net, {.critical_path = true, .sharing = mode});
      const double closed = n * S / kB + kAlpha;
      report(testing::concat("n=", n, " flows on one link"), closed, r.makespan);
      for (int i = 0; i < n; ++i) {
        // Powers of two: every operation is exact, so the engine's S / (B / n) + alpha is
        // bit-identical to n S / B + alpha. Otherwise B / n rounds: within 4 ulps.
        if (testing::is_power_of_two(n)) {
          EXPECT_EQ(r.end[i], closed) << "n=" << n;
        } else {
          EXPECT_DOUBLE_EQ(r.end[i], closed) << "n=" << n;
        }
      }
      EXPECT_EQ(r.links[l].bytes, n * S);
      EXPECT_EQ(r.links[l].flows, static_cast<std::uint32_t>(n));
      EXPECT_EQ(r.links[l].busy, r.makespan - kAlpha);  // the latency phase is not sending
    }
  }
}

TEST(FlowSharing, TwoLinksInSeriesTheBottleneckSetsTheRate) {
  const double S = 8388608.0;  // 2^23
  for (const bool slow_first : {false, true}) {
    Network net;
    const NodeId a = net.add_node("a"), b = net.add_node("b"), c = net.add_node("c");
    const double bw1 = slow_first ? kB : 4 * kB, bw2 = slow_first ? 4 * kB : kB;
    const LinkId l1 = net.add_link(a, b, bw1, kAlpha);
    const LinkId l2 = net.add_link(b, c, bw2, 2 * kAlpha);
    Workload w;
    w.add_transfer("f", S, std::vector<LinkId>{l1, l2});
    const Result r = simulate(w, net);
    const double closed = kAlpha + 2 * kAlpha + S / kB;  // latencies once, then the narrow link
    report(slow_first ? "series, slow link first" : "series, slow link second", closed, r.makespan);
    EXPECT_EQ(r.end[0], closed);
    EXPECT_EQ(r.flows[0].data_start, 3 * kAlpha);
    EXPECT_EQ(r.links[l1].utilisation, S / (bw1 * r.makespan));
  }
}

TEST(FlowSharing, TextbookThreeFlowMaxMin) {
  // Link 0 (capacity 1) carries flows 0 and 1, link 1 (capacity 2) flows 0 and 2. Link 0
  // fills first at 1/2 each; flow 2 takes what link 1 has left: 3/2.
  const std::vector<double> capacity = {1, 2};
  const std::vector<Path> paths = {{0, 1}, {0}, {1}};
  EXPECT_EQ(max_min_rates(capacity, paths), (std::vector<double>{0.5, 0.5, 1.5}));

  // The same in the engine, with sizes that make the rates change as flows end: flow 1
  // (1 byte) ends at 2; flows 0 and 2 then share link 1 at 1 each. Flow 2 (4 bytes) has 1
  // left and ends at 3; flow 0 (3 bytes) has 2 left and ends at 4.
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b"), c = net.add_node("c");
  net.add_link(a, b, 1, 0);
  net.add_link(b, c, 2, 0);
  Workload w;
  w.add_transfer("f0", 3, std::vector<LinkId>{0, 1});
  w.add_transfer("f1", 1, std::vector<LinkId>{0});
  w.add_transfer("f2", 4, std::vector<LinkId>{1});
  for (const Sharing mode : {Sharing::kIncremental, Sharing::kFull}) {
    const Result r = simulate(w, net, {.critical_path = true, .sharing = mode});
    report("textbook max-min: f0 end", 4, r.end[0]);
    EXPECT_EQ(r.end[0], 4.0);
    EXPECT_EQ(r.end[1], 2.0);
    EXPECT_EQ(r.end[2], 3.0);
  }
}

TEST(FlowSharing, MaxMinReferenceRejectsBadInput) {
  const std::vector<Path> paths = {{0, 3}};
  EXPECT_THROW(max_min_rates(std::vector<double>{1, 1}, paths), Error);
  EXPECT_THROW(max_min_rates(std::vector<double>{-1}, std::vector<Path>{{0}}), Error);
  EXPECT_EQ(max_min_rates(std::vector<double>{1}, std::vector<Path>{{}})[0], INFINITY);
}

// The incremental solver against progressive filling, through random batches of adds and
// removes: on a line (nested sub-paths) and on random link sets (capacities equal, small
// integers or arbitrary reals, so ties and near-ties both occur).
TEST(FlowSharing, IncrementalSolverMatchesProgressiveFilling) {
  std::mt19937_64 rng(12345);
  for (int trial = 0; trial < 200; ++trial) {
    const bool line = trial % 2 == 0;
    const int n_links = 2 + static_cast<int>(rng() % 20);
    Network net;
    std::vector<double> capacity;
    for (int i = 0; i < n_links + 1; ++i) net.add_node(testing::concat("n", i));
    for (int l = 0; l < n_links; ++l) {
      const int kind = static_cast<int>(rng() % 3);
      capacity.push_back(kind == 0   ? 1.0
                         : kind == 1 ? static_cast<double>(1 + rng() % 8)
                                     : std::uniform_real_distribution<double>(0.1, 10.0)(rng));
      net.add_link(static_cast<NodeId>(l), static_cast<NodeId>(l + 1), capacity.back(), 0);
    }
    const int n_flows = 2 + static_cast<int>(rng() % 80);
    std::vector<LinkId> arena;
    std::vector<std::uint32_t> offsets, sizes;
    for (int f = 0; f < n_flows; ++f) {
      offsets.push_back(static_cast<std::uint32_t>(arena.size()));
      if (line) {  // a contiguous sub-range of the line
        const int first = static_cast<int>(rng() % n_links);
        const int len = 1 + static_cast<int>(rng() % (n_links - first));
        for (int h = 0; h < len; ++h) arena.push_back(static_cast<LinkId>(first + h));
      } else {  // up to five distinct links (the solver does not need contiguity)
        const int len = 1 + static_cast<int>(rng() % std::min(5, n_links));
        while (static_cast<int>(arena.size() - offsets.back()) < len) {
          const auto l = static_cast<LinkId>(rng() % n_links);
          if (std::find(arena.begin() + offsets.back(), arena.end(), l) == arena.end()) arena.push_back(l);
        }
      }
      sizes.push_back(static_cast<std::uint32_t>(arena.size() - offsets.back()));
    }
    detail::FlowSharing sharing(net, arena, offsets, sizes, detail::SharingMode::kIncremental);
    std::vector<bool> active(n_flows, false);
    double now = 0;
    for (int op = 0; op < 3 * n_flows; ++op) {
      // A batch of changes, then one update, as the engine does at an instant.
      const int batch = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < batch; ++k) {
        const int f = static_cast<int>(rng() % n_flows);
        if (active[f]) {
          sharing.remove(static_cast<std::uint32_t>(f), now);
        } else {
          sharing.add(static_cast<std::uint32_t>(f), 1e6, now);
        }
        active[f] = !active[f];
      }
      sharing.update(now);
      now += 1e-3;
      std::vector<Path> paths;
      std::vector<int> ids;
      for (int f = 0; f < n_flows; ++f) {
        if (!active[f]) continue;
        ids.push_back(f);
        paths.emplace_back(arena.begin() + offsets[f], arena.begin() + offsets[f] + sizes[f]);
      }
      const std::vector<double> expected = max_min_rates(capacity, paths);
      for (std::size_t i = 0; i < ids.size(); ++i) {
        ASSERT_NEAR(sharing.rate(static_cast<std::uint32_t>(ids[i])), expected[i], 1e-9 * expected[i])
            << "trial " << trial << " op " << op << " flow " << ids[i];
      }
    }
    EXPECT_EQ(sharing.fallbacks(), 0u) << "trial " << trial;
  }
}

// The same on two-level fat trees with hundreds of flows sending at once, where one change
// ripples through most links (as in bench_engine's FatTreeFlows): long sweeps in which links
// are queued, re-keyed up and down, and taken out again before they are popped.
TEST(FlowSharing, IncrementalSolverMatchesProgressiveFillingOnFatTrees) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 6; ++trial) {
    const int leaves = 2 + static_cast<int>(rng() % 7), per_leaf = 2 + static_cast<int>(rng() % 7);
    const int spines = 1 + static_cast<int>(rng() % 6), endpoints = leaves * per_leaf;
    Network net;
    std::vector<double> capacity;
    const auto link = [&](int a, int b) {
      capacity.push_back(trial % 2 == 0 ? 1.0 : static_cast<double>(1 + rng() % 4));
      return net.add_link(static_cast<NodeId>(a), static_cast<NodeId>(b), capacity.back(), 0);
    };
    for (int i = 0; i < endpoints + leaves + spines; ++i) net.add_node(testing::concat("n", i));
    std::vector<LinkId> up, down, rise, fall;  // rise/fall: [leaf * spines + spine]
    for (int e = 0; e < endpoints; ++e) {
      up.push_back(link(e, endpoints + e / per_leaf));
      down.push_back(link(endpoints + e / per_leaf, e));
    }
    for (int l = 0; l < leaves; ++l) {
      for (int s = 0; s < spines; ++s) {
        rise.push_back(link(endpoints + l, endpoints + leaves + s));
        fall.push_back(link(endpoints + leaves + s, endpoints + l));
      }
    }
    const int n_flows = 200 + static_cast<int>(rng() % 600);
    std::vector<LinkId> arena;
    std::vector<std::uint32_t> offsets, sizes;
    for (int f = 0; f < n_flows; ++f) {
      offsets.push_back(static_cast<std::uint32_t>(arena.size()));
      const int src = static_cast<int>(rng() % endpoints);
      int dst = static_cast<int>(rng() % (endpoints - 1));
      if (dst >= src) ++dst;
      const int ls = src / per_leaf, ld = dst / per_leaf, s = static_cast<int>(rng() % spines);
      arena.push_back(up[src]);
      if (ls != ld) {
        arena.push_back(rise[ls * spines + s]);
        arena.push_back(fall[ld * spines + s]);
      }
      arena.push_back(down[dst]);
      sizes.push_back(static_cast<std::uint32_t>(arena.size() - offsets.back()));
    }
    detail::FlowSharing sharing(net, arena, offsets, sizes, detail::SharingMode::kIncremental);
    std::vector<bool> active(n_flows, false);
    int n_active = 0;
    const int target = n_flows / 2;
    double now = 0;
    for (int op = 0; op < 600; ++op) {
      const int batch = rng() % 4 == 0 ? 2 + static_cast<int>(rng() % 4) : 1;
      for (int k = 0; k < batch; ++k) {
        // Hover around `target` sending flows, one start or end at a time.
        const bool add = n_active == 0 || (n_active < target ? rng() % 4 != 0 : rng() % 4 == 0);
        int f = static_cast<int>(rng() % n_flows);
        while (active[f] == add) f = (f + 1) % n_flows;
        if (add) {
          sharing.add(static_cast<std::uint32_t>(f), 1e6, now);
        } else {
          sharing.remove(static_cast<std::uint32_t>(f), now);
        }
        active[f] = add;
        n_active += add ? 1 : -1;
      }
      sharing.update(now);
      now += 1e-3;
      if (op % 20 != 19) continue;
      std::vector<Path> paths;
      std::vector<int> ids;
      for (int f = 0; f < n_flows; ++f) {
        if (!active[f]) continue;
        ids.push_back(f);
        paths.emplace_back(arena.begin() + offsets[f], arena.begin() + offsets[f] + sizes[f]);
      }
      const std::vector<double> expected = max_min_rates(capacity, paths);
      for (std::size_t i = 0; i < ids.size(); ++i) {
        ASSERT_NEAR(sharing.rate(static_cast<std::uint32_t>(ids[i])), expected[i], 1e-9 * expected[i])
            << "trial " << trial << " op " << op << " flow " << ids[i];
      }
    }
    EXPECT_EQ(sharing.fallbacks(), 0u) << "trial " << trial;
  }
}

// Whole runs: incremental and full re-solving give the same timeline (up to rounding, as
// the two re-solve different sets and so subtract in different orders).
TEST(FlowSharing, IncrementalAndFullRunsAgree) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int p = 8;
    Network net = testing::star(p, 1e9 * static_cast<double>(1 + rng() % 4), 1e-6);
    Workload w;
    std::vector<TaskId> tasks;
    for (int i = 0; i < 80; ++i) {
      const auto s = static_cast<NodeId>(rng() % p);
      auto d = static_cast<NodeId>(rng() % p);
      if (d == s) d = (d + 1) % p;
      const TaskId t =
          w.add_transfer(testing::concat("t", i), static_cast<double>(1 + rng() % 1000) * 1e5, net.shortest_path(s, d));
      if (!tasks.empty() && rng() % 2) w.add_dependency(tasks[rng() % tasks.size()], t);
      tasks.push_back(t);
    }
    const Result inc = simulate(w, net, {.critical_path = true, .sharing = Sharing::kIncremental});
    const Result full = simulate(w, net, {.critical_path = true, .sharing = Sharing::kFull});
    for (TaskId t = 0; t < w.task_count(); ++t) {
      ASSERT_NEAR(inc.end[t], full.end[t], 1e-9 * full.end[t]) << "trial " << trial << " task " << t;
    }
    EXPECT_LE(inc.stats.flows_rerated, full.stats.flows_rerated);
    EXPECT_EQ(inc.stats.sharing_fallbacks, 0u);
  }
}

}  // namespace
}  // namespace moesim::sim
