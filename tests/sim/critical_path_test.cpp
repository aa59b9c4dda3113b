// The critical path against an independent computation: on 1,000 random DAGs the path's
// length equals the longest path Boost.Graph finds (dag_shortest_paths on negated weights),
// bit for bit, and the path is a real chain of dependencies and queue releases.
#include <gtest/gtest.h>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dag_shortest_paths.hpp>
#include <random>
#include <set>
#include <vector>

#include "sim/engine.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property,
                                    boost::property<boost::edge_weight_t, double>>;

struct RandomDag {
  Workload w;
  std::vector<double> duration;
  std::vector<std::pair<TaskId, TaskId>> edges;        // dependencies
  std::vector<std::pair<TaskId, TaskId>> queue_order;  // consecutive tasks of one in-order queue
};

// Tasks in topological order (ids), random edges forward, durations mixing zeros, integers
// and arbitrary reals. With `queues`, some tasks go on in-order queues of capacity 1 in id
// order, which adds "previous on the queue ends before the next starts" edges.
RandomDag make_dag(std::mt19937_64& rng, bool queues) {
  RandomDag d;
  const int n = 2 + static_cast<int>(rng() % 150);
  const double density = std::uniform_real_distribution<double>(0.0, 0.2)(rng);
  const int n_res = queues ? 1 + static_cast<int>(rng() % 4) : 0;
  std::vector<ResourceId> res;
  for (int r = 0; r < n_res; ++r) res.push_back(d.w.add_resource(testing::concat("q", r)));
  std::vector<TaskId> last_on(n_res, 0);
  std::vector<bool> used(n_res, false);
  std::uniform_real_distribution<double> real(0.0, 10.0);
  for (int i = 0; i < n; ++i) {
    const int kind = static_cast<int>(rng() % 4);
    const double dur = kind == 0 ? 0.0 : kind == 1 ? static_cast<double>(rng() % 5) : real(rng);
    TaskOptions opt;
    if (n_res > 0 && rng() % 2) {
      const int r = static_cast<int>(rng() % n_res);
      opt.resource = res[r];
      if (used[r]) d.queue_order.emplace_back(last_on[r], static_cast<TaskId>(i));
      used[r] = true;
      last_on[r] = static_cast<TaskId>(i);
    }
    opt.category = dur == 0 ? "zero" : "work";
    d.w.add_delay(testing::concat("t", i), dur, opt);
    d.duration.push_back(dur);
  }
  for (int j = 1; j < n; ++j) {
    for (int i = 0; i < j; ++i) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < density) {
        d.w.add_dependency(static_cast<TaskId>(i), static_cast<TaskId>(j));
        d.edges.emplace_back(i, j);
      }
    }
  }
  return d;
}

// Longest path (by task durations) via Boost: a source s with an edge to every task, task
// weights on the edges into them, negated, and dag_shortest_paths.
double boost_longest_path(const RandomDag& d) {
  const std::size_t n = d.duration.size();
  Graph g(n + 1);
  const std::size_t s = n;
  for (std::size_t v = 0; v < n; ++v) boost::add_edge(s, v, -d.duration[v], g);
  for (const auto& [a, b] : d.edges) boost::add_edge(a, b, -d.duration[b], g);
  for (const auto& [a, b] : d.queue_order) boost::add_edge(a, b, -d.duration[b], g);
  std::vector<double> dist(n + 1);
  boost::dag_shortest_paths(g, s, boost::distance_map(dist.data()));
  double longest = 0;
  for (std::size_t v = 0; v < n; ++v) longest = std::max(longest, -dist[v]);
  return longest;
}

void check_chain(const RandomDag& d, const Result& r) {
  const CriticalPath& cp = r.critical_path;
  ASSERT_FALSE(cp.steps.empty());
  EXPECT_EQ(cp.steps.front().start, 0.0);
  EXPECT_EQ(cp.steps.front().via, Via::kStart);
  EXPECT_EQ(cp.steps.back().end, r.makespan);
  const std::set<std::pair<TaskId, TaskId>> deps(d.edges.begin(), d.edges.end());
  const std::set<std::pair<TaskId, TaskId>> queue(d.queue_order.begin(), d.queue_order.end());
  for (std::size_t k = 1; k < cp.steps.size(); ++k) {
    const CriticalStep& prev = cp.steps[k - 1];
    const CriticalStep& cur = cp.steps[k];
    EXPECT_EQ(cur.start, prev.end);
    if (cur.via == Via::kDependency) {
      EXPECT_TRUE(deps.count({prev.task, cur.task})) << prev.task << " -> " << cur.task;
    } else {
      ASSERT_EQ(cur.via, Via::kResource);
      EXPECT_TRUE(queue.count({prev.task, cur.task})) << prev.task << " -> " << cur.task;
      EXPECT_EQ(cur.resource, d.w.resource(cur.task));
    }
  }
}

TEST(CriticalPath, LengthEqualsBoostLongestPathOn1000RandomDags) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 1000; ++trial) {
    const bool queues = trial % 2 == 1;
    const RandomDag d = make_dag(rng, queues);
    Network net;
    const Result r = simulate(d.w, net);
    const double expected = boost_longest_path(d);
    // Both take max(end of predecessors) + duration in the same order along every path, and
    // rounding is monotone, so the two agree to the last bit.
    ASSERT_EQ(r.critical_path.length, expected) << "trial " << trial << (queues ? " (queues)" : "");
    ASSERT_EQ(r.makespan, expected);
    check_chain(d, r);
    if (::testing::Test::HasFailure()) FAIL() << "trial " << trial;
  }
}

TEST(CriticalPath, AttributesTimeToCategoriesAndTransferWaits) {
  // compute (2 s) -> transfer of 2^30 bytes over a 2^30 B/s link with 0.5 s latency, sharing
  // it with a second flow for its whole life -> compute (1 s).
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b");
  const LinkId l = net.add_link(a, b, 1073741824.0, 0.5);
  Workload w;
  const TaskId c1 = w.add_delay("c1", 2, {.category = "gemm"});
  const TaskId x = w.add_transfer("x", 1073741824.0, std::vector<LinkId>{l}, {.category = "a2a"});
  const TaskId other = w.add_transfer("other", 1073741824.0, std::vector<LinkId>{l});
  const TaskId c2 = w.add_delay("c2", 1, {.category = "gemm"});
  w.add_dependency(c1, x);
  w.add_dependency(c1, other);
  w.add_dependency(x, c2);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.end[x], 2 + 0.5 + 2.0);  // two flows share: 2 s instead of 1
  EXPECT_EQ(r.makespan, 5.5);
  const CriticalPath& cp = r.critical_path;
  ASSERT_EQ(cp.steps.size(), 3u);
  EXPECT_EQ(cp.steps[1].task, x);
  EXPECT_EQ(cp.latency, 0.5);
  EXPECT_EQ(cp.contention, 1.0);
  ASSERT_EQ(cp.by_category.size(), 2u);
  EXPECT_EQ(cp.by_category[0].category, "gemm");  // largest first
  EXPECT_EQ(cp.by_category[0].seconds, 3.0);
  EXPECT_DOUBLE_EQ(cp.by_category[0].fraction, 3.0 / 5.5);
  EXPECT_EQ(cp.by_category[1].category, "a2a");
  EXPECT_EQ(cp.by_category[1].seconds, 2.5);
  (void)other;
}

TEST(CriticalPath, QueuedTimeIsReported) {
  // t1 holds the queue until 4; t2 is ready at 1 and waits 3.
  Network net;
  Workload w;
  const ResourceId q = w.add_resource("q");
  const TaskId t0 = w.add_delay("t0", 1);
  const TaskId t1 = w.add_delay("t1", 4, {.resource = q});
  const TaskId t2 = w.add_delay("t2", 1, {.resource = q});
  w.add_dependency(t0, t2);
  const Result r = simulate(w, net);
  const CriticalPath& cp = r.critical_path;
  ASSERT_EQ(cp.steps.size(), 2u);
  EXPECT_EQ(cp.steps[0].task, t1);
  EXPECT_EQ(cp.steps[1].task, t2);
  EXPECT_EQ(cp.steps[1].via, Via::kResource);
  EXPECT_EQ(cp.steps[1].ready, 1.0);
  EXPECT_EQ(cp.queued, 3.0);
}

}  // namespace
}  // namespace moesim::sim
