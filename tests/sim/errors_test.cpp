// One failing case per kind of bad input: each is an Error with a message naming what is
// wrong, never a crash and never a hang.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "sim/collectives.hpp"
#include "sim/engine.hpp"
#include "sim/error.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

// Runs f, expects an Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    std::printf("  error: %s\n", msg.c_str());
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
  }
}

TEST(Errors, DependencyCycleIsReportedWithItsTasks) {
  Network net;
  Workload w;
  const TaskId a = w.add_delay("load", 1), b = w.add_delay("compute", 1), c = w.add_delay("store", 1);
  const TaskId free_task = w.add_delay("unrelated", 1);
  w.add_dependency(a, b);
  w.add_dependency(b, c);
  w.add_dependency(c, a);
  (void)free_task;
  expect_error([&] { simulate(w, net); }, {"cycle", "'load'", "'compute'", "'store'"});
}

TEST(Errors, SelfDependencyIsRejectedAtOnce) {
  Workload w;
  const TaskId a = w.add_delay("a", 1);
  expect_error([&] { w.add_dependency(a, a); }, {"'a'", "itself"});
}

TEST(Errors, CycleThroughAnInOrderQueue) {
  // "first" is queued before "second" on the stream but depends on it.
  Network net;
  Workload w;
  const ResourceId s = w.add_resource("stream0");
  const TaskId first = w.add_delay("first", 1, {.resource = s});
  const TaskId second = w.add_delay("second", 1, {.resource = s});
  w.add_dependency(second, first);
  expect_error([&] { simulate(w, net); }, {"cycle", "'first'", "'second'", "in-order resource 'stream0'"});
}

TEST(Errors, CycleThroughACollectiveAndTwoStreams) {
  // Stream r1 runs t1 before the collective A; t1 needs B; B is queued after A on r0.
  Network net;
  Workload w;
  const ResourceId r0 = w.add_resource("rank0"), r1 = w.add_resource("rank1");
  w.add_collective("A", CollectiveSpec{{r0, r1}, {}, 0, nullptr}, {.priority = 1});
  const TaskId b = w.add_delay("B", 1, {.resource = r0, .priority = 2});
  const TaskId t1 = w.add_delay("t1", 1, {.resource = r1, .priority = 0});
  w.add_dependency(b, t1);
  expect_error([&] { simulate(w, net); }, {"cycle", "'A'", "'B'", "'t1'", "rank0", "rank1"});
}

TEST(Errors, APoolDoesNotWaitForABlockedCollective) {
  // The pool's best task, the collective C, cannot start: its stream runs E first, and E
  // needs D, which is queued on the pool. The pool starts D meanwhile: no deadlock.
  Network net;
  Workload w;
  const ResourceId pool = w.add_resource("pool", {.order = QueueOrder::kPriority});
  const ResourceId stream = w.add_resource("stream");
  const TaskId c = w.add_collective("C", CollectiveSpec{{pool, stream}, {}, 0, nullptr}, {.priority = 0});
  const TaskId e = w.add_delay("E", 1, {.resource = stream, .priority = -1});
  const TaskId d = w.add_delay("D", 1, {.resource = pool, .priority = 1});
  w.add_dependency(d, e);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.start[d], 0.0);
  EXPECT_EQ(r.start[e], 1.0);
  EXPECT_EQ(r.start[c], 2.0);
}

TEST(Errors, TransferOverALinkThatDoesNotExist) {
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b");
  net.add_link(a, b, 1e9, 0);
  Workload w;
  w.add_transfer("send", 100, std::vector<LinkId>{0, 7});
  expect_error([&] { simulate(w, net); }, {"'send'", "link 7", "does not exist"});
}

TEST(Errors, PathThatIsNotContiguous) {
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b"), c = net.add_node("c");
  const LinkId ab = net.add_link(a, b, 1e9, 0);
  const LinkId ca = net.add_link(c, a, 1e9, 0);
  Workload w;
  w.add_transfer("send", 100, std::vector<LinkId>{ab, ca});
  expect_error([&] { simulate(w, net); }, {"'send'", "not contiguous"});
}

TEST(Errors, NoLinkBetweenTwoNodes) {
  Network net;
  const NodeId a = net.add_node("gpu0"), b = net.add_node("gpu1");
  expect_error([&] { net.link_between(a, b); }, {"no link", "'gpu0'", "'gpu1'"});
  expect_error([&] { net.shortest_path(a, b); }, {"no route", "'gpu0'", "'gpu1'"});
  const std::vector<NodeId> hops = {a, b};
  expect_error([&] { net.path_through(hops); }, {"no link"});
}

TEST(Errors, BadNumbers) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  Workload w;
  expect_error([&] { w.add_delay("neg", -1); }, {"'neg'", "duration", "-1"});
  expect_error([&] { w.add_delay("nan", nan); }, {"'nan'", "duration"});
  expect_error([&] { w.add_delay("inf", inf); }, {"'inf'", "duration"});
  expect_error([&] { w.add_transfer("bytes", -5, {}); }, {"'bytes'", "size", "-5"});
  expect_error([&] { w.add_collective("c", CollectiveSpec{{}, {}, nan, nullptr}); }, {"'c'", "size"});
  expect_error([&] { w.add_resource("zero", {.capacity = 0}); }, {"'zero'", "capacity"});
  Network net;
  const NodeId a = net.add_node("a"), b = net.add_node("b");
  expect_error([&] { net.add_link(a, b, -1e9, 0); }, {"a->b", "bandwidth", "-1e+09"});
  expect_error([&] { net.add_link(a, b, 0, 0); }, {"bandwidth"});
  expect_error([&] { net.add_link(a, b, nan, 0); }, {"bandwidth"});
  expect_error([&] { net.add_link(a, b, 1e9, -1e-6); }, {"latency"});
  expect_error([&] { net.add_link(a, 9, 1e9, 0); }, {"node 9", "does not exist"});
  EXPECT_EQ(w.task_count(), 0u);  // nothing half-added
}

TEST(Errors, BadIds) {
  Workload w;
  expect_error([&] { w.add_delay("t", 1, {.resource = 3}); }, {"'t'", "resource 3"});
  const TaskId t = w.add_delay("t", 1);
  expect_error([&] { w.add_dependency(t, 42); }, {"task 42", "does not exist"});
  expect_error([&] { w.add_collective("c", CollectiveSpec{{5}, {}, 0, nullptr}); }, {"'c'", "resource 5"});
  const ResourceId r = w.add_resource("r");
  expect_error([&] { w.add_collective("c", CollectiveSpec{{r, r}, {}, 0, nullptr}); }, {"'c'", "twice"});
  expect_error([&] { w.add_collective("c", CollectiveSpec{{}, {}, 0, nullptr}, {.resource = r}); }, {"parties"});
}

TEST(Errors, CollectiveProblemsNameTheCollective) {
  Network net = testing::star(2, 1e9, 0);
  Workload w;
  w.add_collective("ar", CollectiveSpec{{}, {0, 77}, 1e6, ring_all_reduce(shortest_path_routes(net))});
  expect_error([&] { simulate(w, net); }, {"'ar'", "endpoint 1", "node 77"});

  // The route lookup fails inside the expansion: a ring over two nodes with no link.
  Network bare;
  bare.add_node("x");
  bare.add_node("y");
  Workload w2;
  w2.add_collective("ar2", CollectiveSpec{{}, {0, 1}, 1e6, ring_all_reduce(shortest_path_routes(bare))});
  expect_error([&] { simulate(w2, bare); }, {"'ar2'", "no route", "'x'", "'y'"});

  // An expansion that refers to a later step, or moves negative bytes.
  Workload w3;
  w3.add_collective(
      "bad", CollectiveSpec{{}, {}, 0, [](const CollectiveContext&, StepBuilder& b) { b.delay(1, {StepRef{3}}); }});
  expect_error([&] { simulate(w3, bare); }, {"'bad'", "step 0", "step 3"});
  Workload w4;
  w4.add_collective("neg",
                    CollectiveSpec{{}, {}, 0, [](const CollectiveContext&, StepBuilder& b) { b.transfer(-1, {}); }});
  expect_error([&] { simulate(w4, bare); }, {"'neg'", "-1 bytes"});

  // Group sizes that do not divide the ranks.
  Network four = testing::full_mesh(4, 1e9, 0);
  Workload w5;
  w5.add_collective("h", CollectiveSpec{{}, {0, 1, 2, 3}, 1e6, hierarchical_all_reduce(3, shortest_path_routes(four))});
  expect_error([&] { simulate(w5, four); }, {"'h'", "groups of 3"});
}

}  // namespace
}  // namespace moesim::sim
