// Resources: in-order streams, priority pools, capacity, and the statistics the result
// reports for resources and links.
#include <gtest/gtest.h>

#include "sim/engine.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

TEST(Resources, InOrderStreamKeepsItsOrderEvenWhenLaterTasksAreReadyFirst) {
  Network net;
  Workload w;
  const ResourceId s = w.add_resource("stream");
  const TaskId gate = w.add_delay("gate", 5);
  const TaskId a = w.add_delay("a", 1, {.resource = s});  // waits for gate
  const TaskId b = w.add_delay("b", 1, {.resource = s});  // ready at 0, but queued after a
  w.add_dependency(gate, a);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.start[a], 5.0);
  EXPECT_EQ(r.start[b], 6.0);
}

TEST(Resources, PriorityOverridesInsertionOrderOnAStream) {
  Network net;
  Workload w;
  const ResourceId s = w.add_resource("stream");
  const TaskId a = w.add_delay("a", 1, {.resource = s, .priority = 2});
  const TaskId b = w.add_delay("b", 1, {.resource = s, .priority = 1});
  const Result r = simulate(w, net);
  EXPECT_EQ(r.start[b], 0.0);
  EXPECT_EQ(r.start[a], 1.0);
}

TEST(Resources, PriorityPoolStartsTheBestReadyTask) {
  Network net;
  Workload w;
  const ResourceId pool = w.add_resource("pool", {.order = QueueOrder::kPriority});
  const TaskId first = w.add_delay("first", 2, {.resource = pool, .priority = 9});
  const TaskId gate = w.add_delay("gate", 1);
  const TaskId urgent = w.add_delay("urgent", 1, {.resource = pool, .priority = 0});
  const TaskId late = w.add_delay("late", 1, {.resource = pool, .priority = 5});
  w.add_dependency(gate, urgent);
  const Result r = simulate(w, net);
  // At 0 only "first" and "late" are ready: "late" (5) beats "first" (9). At 1 "urgent"
  // is ready and beats "first".
  EXPECT_EQ(r.start[late], 0.0);
  EXPECT_EQ(r.start[urgent], 1.0);
  EXPECT_EQ(r.start[first], 2.0);
}

TEST(Resources, EqualPriorityPoolIsFirstReadyFirstServedThenLowestId) {
  Network net;
  Workload w;
  const ResourceId pool = w.add_resource("pool", {.order = QueueOrder::kPriority});
  const TaskId busy = w.add_delay("busy", 3, {.resource = pool});
  const TaskId g1 = w.add_delay("g1", 2), g2 = w.add_delay("g2", 1);
  const TaskId x = w.add_delay("x", 1, {.resource = pool});  // ready at 2
  const TaskId y = w.add_delay("y", 1, {.resource = pool});  // ready at 1
  const TaskId z = w.add_delay("z", 1, {.resource = pool});  // ready at 1, higher id than y
  w.add_dependency(g1, x);
  w.add_dependency(g2, y);
  w.add_dependency(g2, z);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.start[busy], 0.0);
  EXPECT_EQ(r.start[y], 3.0);
  EXPECT_EQ(r.start[z], 4.0);
  EXPECT_EQ(r.start[x], 5.0);
}

TEST(Resources, CapacityRunsSeveralAtOnce) {
  Network net;
  Workload w;
  const ResourceId r2 = w.add_resource("two", {.capacity = 2});
  for (int i = 0; i < 3; ++i) w.add_delay(testing::concat("t", i), 1, {.resource = r2});
  const Result r = simulate(w, net);
  EXPECT_EQ(r.makespan, 2.0);
  EXPECT_EQ(r.resources[r2].busy, 2.0);
  EXPECT_EQ(r.resources[r2].task_seconds, 3.0);
  EXPECT_EQ(r.resources[r2].tasks, 3u);
  EXPECT_EQ(r.resources[r2].utilisation, 1.0);
  // The third task's start is owed to the first's release.
  EXPECT_EQ(r.critical_path.steps.size(), 2u);
}

TEST(Resources, UtilisationCountsIdleGaps) {
  Network net;
  Workload w;
  const ResourceId s = w.add_resource("s");
  const TaskId a = w.add_delay("a", 1, {.resource = s});
  const TaskId gap = w.add_delay("gap", 3);
  const TaskId b = w.add_delay("b", 1, {.resource = s});
  w.add_dependency(a, gap);
  w.add_dependency(gap, b);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.makespan, 5.0);
  EXPECT_EQ(r.resources[s].busy, 2.0);
  EXPECT_EQ(r.resources[s].utilisation, 0.4);
}

TEST(Resources, TransferOnAStreamHoldsItForLatencyAndData) {
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b");
  const LinkId l = net.add_link(a, b, 1024, 0.5);
  Workload w;
  const ResourceId s = w.add_resource("comm");
  const TaskId t1 = w.add_transfer("t1", 1024, std::vector<LinkId>{l}, {.resource = s});
  const TaskId t2 = w.add_transfer("t2", 1024, std::vector<LinkId>{l}, {.resource = s});
  const Result r = simulate(w, net);
  EXPECT_EQ(r.end[t1], 1.5);
  EXPECT_EQ(r.start[t2], 1.5);
  EXPECT_EQ(r.end[t2], 3.0);
  EXPECT_EQ(r.links[l].bytes, 2048.0);
  EXPECT_EQ(r.links[l].busy, 2.0);
  EXPECT_EQ(r.links[l].utilisation, 2048.0 / (1024 * 3.0));
}

TEST(Resources, ZeroDurationChainsResolveAtOneInstant) {
  Network net;
  Workload w;
  TaskId prev = w.add_delay("z0", 0);
  for (int i = 1; i < 1000; ++i) {
    const TaskId t = w.add_delay(testing::concat("z", i), 0);
    w.add_dependency(prev, t);
    prev = t;
  }
  const TaskId last = w.add_delay("one", 1);
  w.add_dependency(prev, last);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.makespan, 1.0);
  EXPECT_EQ(r.critical_path.steps.size(), 1001u);
}

TEST(Resources, EmptyWorkload) {
  Network net;
  Workload w;
  const Result r = simulate(w, net);
  EXPECT_EQ(r.makespan, 0.0);
  EXPECT_TRUE(r.critical_path.steps.empty());
}

}  // namespace
}  // namespace moesim::sim
