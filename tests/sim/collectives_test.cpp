// Collectives expanded into steps reproduce the alpha-beta closed forms
// (reference/hardware.md section 5): ring all-reduce, reduce-scatter, all-gather, pairwise
// and direct all-to-all, tree all-reduce, and the two hierarchical compositions.
#include "sim/collectives.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "sim/engine.hpp"
#include "sim/error.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

using testing::report;

// Dyadic values: every sum and quotient in the closed forms and in the engine is exact.
constexpr double kB = 1073741824.0;       // 2^30 bytes/s
constexpr double kAlpha = 1.0 / 1048576;  // 2^-20 s
constexpr double kN = 67108864.0;         // 2^26 bytes

// A directed ring 0 -> 1 -> ... -> p-1 -> 0.
Network ring_network(int p, double bw, double alpha) {
  Network net;
  for (int i = 0; i < p; ++i) net.add_node(testing::concat("r", i));
  for (int i = 0; i < p; ++i) net.add_link(static_cast<NodeId>(i), static_cast<NodeId>((i + 1) % p), bw, alpha);
  return net;
}

RouteFn direct_routes(const Network& net) {
  return [&net](NodeId s, NodeId d) { return Path{net.link_between(s, d)}; };
}

Result run_collective(const Network& net, int p, double bytes, Expansion expansion, TaskId* id = nullptr) {
  Workload w;
  CollectiveSpec spec;
  spec.endpoints = testing::first_nodes(p);
  spec.bytes = bytes;
  spec.expansion = std::move(expansion);
  for (int i = 0; i < p; ++i) spec.parties.push_back(w.add_resource(testing::concat("comm", i)));
  const TaskId t = w.add_collective("coll", std::move(spec), {.category = "collective"});
  if (id != nullptr) *id = t;
  return simulate(w, net);
}

TEST(Collectives, RingAllReduceEqualsClosedFormExactly) {
  for (const int p : {2, 4, 8, 16, 32}) {
    const Network net = ring_network(p, kB, kAlpha);
    const Result r = run_collective(net, p, kN, ring_all_reduce(direct_routes(net)));
    const double closed = 2 * (p - 1) * kAlpha + 2.0 * (p - 1) / p * kN / kB;
    report(testing::concat("ring all-reduce p=", p), closed, r.makespan);
    EXPECT_EQ(r.makespan, closed) << "p=" << p;
    // Expanded into 2(p-1) steps per rank, each a transfer of n/p bytes.
    std::map<NodeId, int> sends;
    for (const FlowRecord& f : r.flows) {
      EXPECT_EQ(f.bytes, kN / p);
      ++sends[f.src];
    }
    ASSERT_EQ(sends.size(), static_cast<std::size_t>(p));
    for (const auto& [rank, count] : sends) EXPECT_EQ(count, 2 * (p - 1)) << "rank " << rank;
  }
}

TEST(Collectives, RingAllReduceNonDyadicWithinRounding) {
  // 25 GB/s, 1.7 us, 300 MB: the engine adds 4(p-1) rounded terms one by one, the closed
  // form multiplies; they agree to a few ulps, far inside 1e-12 relative.
  const double bw = 25e9, alpha = 1.7e-6, n = 3e8;
  for (const int p : {3, 5, 6, 7, 12}) {
    const Network net = ring_network(p, bw, alpha);
    const Result r = run_collective(net, p, n, ring_all_reduce(direct_routes(net)));
    const double closed = 2 * (p - 1) * alpha + 2.0 * (p - 1) / p * n / bw;
    report(testing::concat("ring all-reduce p=", p, " (non-dyadic)"), closed, r.makespan);
    EXPECT_NEAR(r.makespan, closed, 1e-12 * closed);
  }
}

TEST(Collectives, RingReduceScatterAndAllGather) {
  for (const int p : {2, 4, 8}) {
    const Network net = ring_network(p, kB, kAlpha);
    const double closed = (p - 1) * kAlpha + 1.0 * (p - 1) / p * kN / kB;
    const Result rs = run_collective(net, p, kN, ring_reduce_scatter(direct_routes(net)));
    const Result ag = run_collective(net, p, kN, ring_all_gather(direct_routes(net)));
    report(testing::concat("ring reduce-scatter p=", p), closed, rs.makespan);
    EXPECT_EQ(rs.makespan, closed);
    EXPECT_EQ(ag.makespan, closed);
  }
}

TEST(Collectives, PairwiseAllToAllOnASwitch) {
  // Route = uplink + downlink, so alpha per message is two hops' latency.
  for (const int p : {2, 4, 8, 16}) {
    const Network net = testing::star(p, kB, kAlpha);
    const Result r = run_collective(net, p, kN, pairwise_all_to_all(shortest_path_routes(net)));
    const double closed = (p - 1) * (2 * kAlpha) + 1.0 * (p - 1) / p * kN / kB;
    report(testing::concat("pairwise all-to-all p=", p), closed, r.makespan);
    EXPECT_EQ(r.makespan, closed);
    EXPECT_EQ(r.flows.size(), static_cast<std::size_t>(p * (p - 1)));
  }
}

TEST(Collectives, DirectAllToAllSharesTheEndpointLinks) {
  // All p(p-1) flows at once: each uplink and downlink carries p-1 of them, so each gets
  // B/(p-1) and the whole takes 2 alpha + (p-1)/p n / B.
  for (const int p : {2, 3, 4, 5, 8}) {
    const Network net = testing::star(p, kB, kAlpha);
    const Result r = run_collective(net, p, kN, direct_all_to_all(shortest_path_routes(net)));
    const double closed = 2 * kAlpha + 1.0 * (p - 1) / p * kN / kB;
    report(testing::concat("direct all-to-all p=", p), closed, r.makespan);
    EXPECT_NEAR(r.makespan, closed, 1e-12 * closed);  // B/(p-1) rounds when p-1 is not a power of two
  }
}

TEST(Collectives, TreeAllReduceOnAFullMesh) {
  for (const int p : {2, 3, 7, 15}) {
    const Network net = testing::full_mesh(p, kB, kAlpha);
    const Result r = run_collective(net, p, kN, tree_all_reduce(direct_routes(net)));
    const int depth = static_cast<int>(std::floor(std::log2(p)));
    const double closed = 2 * depth * (kAlpha + kN / kB);
    report(testing::concat("tree all-reduce p=", p), closed, r.makespan);
    EXPECT_EQ(r.makespan, closed);
  }
}

TEST(Collectives, HierarchicalAllReduce) {
  // N nodes of G ranks: a directed ring inside each node (fast), and a directed ring between
  // the ranks with the same local index (slow).
  const int G = 4, N = 2;
  const double bi = 4 * kB, ai = kAlpha / 4, be = kB, ae = kAlpha;
  Network net;
  for (int i = 0; i < G * N; ++i) net.add_node(testing::concat("g", i));
  auto id = [&](int node, int local) { return static_cast<NodeId>(node * G + local); };
  for (int node = 0; node < N; ++node) {
    for (int j = 0; j < G; ++j) {
      net.add_link(id(node, j), id(node, (j + 1) % G), bi, ai);
      if (N > 1) net.add_link(id(node, j), id((node + 1) % N, j), be, ae);
    }
  }
  const Result r = run_collective(net, G * N, kN, hierarchical_all_reduce(G, direct_routes(net)));
  const double intra = (G - 1) * ai + 1.0 * (G - 1) / G * kN / bi;
  const double inter = 2 * (N - 1) * ae + 2.0 * (N - 1) / N * (kN / G) / be;
  report("hierarchical all-reduce 2x4", intra + inter + intra, r.makespan);
  EXPECT_EQ(r.makespan, intra + inter + intra);
}

TEST(Collectives, HierarchicalAllToAll) {
  const int G = 4, N = 4;
  const double bi = 4 * kB, ai = kAlpha / 4, be = kB, ae = kAlpha;
  Network net;
  for (int i = 0; i < G * N; ++i) net.add_node(testing::concat("g", i));
  for (int a = 0; a < G * N; ++a) {
    for (int b = 0; b < G * N; ++b) {
      if (a == b) continue;
      if (a / G == b / G) net.add_link(static_cast<NodeId>(a), static_cast<NodeId>(b), bi, ai);
      if (a % G == b % G) net.add_link(static_cast<NodeId>(a), static_cast<NodeId>(b), be, ae);
    }
  }
  const Result r = run_collective(net, G * N, kN, hierarchical_all_to_all(G, direct_routes(net)));
  const double closed = (G - 1) * ai + 1.0 * (G - 1) / G * kN / bi + (N - 1) * ae + 1.0 * (N - 1) / N * kN / be;
  report("hierarchical all-to-all 4x4", closed, r.makespan);
  EXPECT_EQ(r.makespan, closed);
}

TEST(Collectives, UnevenAllToAllvSkipsEmptyPairsAndMovesEveryByte) {
  const int p = 4;
  const Network net = testing::full_mesh(p, kB, kAlpha);
  std::vector<Bytes> sizes(p * p, 0.0);
  double total = 0;
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < p; ++j) {
      if (i == j || (i + j) % 3 == 0) continue;
      sizes[i * p + j] = 1024.0 * (1 + i + 2 * j);
      total += sizes[i * p + j];
    }
  }
  for (const bool pairwise : {true, false}) {
    Expansion e = [&](const CollectiveContext& c, StepBuilder& b) {
      if (pairwise) {
        emit_pairwise_all_to_allv(b, c.endpoints, sizes, direct_routes(net));
      } else {
        emit_direct_all_to_allv(b, c.endpoints, sizes, direct_routes(net));
      }
    };
    const Result r = run_collective(net, p, 0, e);
    double moved = 0;
    for (const LinkStats& l : r.links) moved += l.bytes;
    EXPECT_EQ(moved, total);
    for (const FlowRecord& f : r.flows) EXPECT_GT(f.bytes, 0);
  }
}

TEST(Collectives, CollectiveWaitsForEveryPartyAndHoldsThem) {
  // Party 1 is busy until t=3; the collective starts then, on both parties, and a task
  // queued after it on party 0 runs after it.
  const int p = 2;
  const Network net = ring_network(p, kB, 0);
  Workload w;
  const ResourceId r0 = w.add_resource("s0"), r1 = w.add_resource("s1");
  const TaskId busy = w.add_delay("busy", 3, {.resource = r1});
  CollectiveSpec spec{{r0, r1}, testing::first_nodes(p), kN, ring_all_reduce(direct_routes(net))};
  const TaskId c = w.add_collective("ar", spec);
  const TaskId after = w.add_delay("after", 1, {.resource = r0});
  const Result r = simulate(w, net);
  EXPECT_EQ(r.start[c], 3.0);
  EXPECT_EQ(r.start[after], r.end[c]);
  EXPECT_EQ(r.end[busy], 3.0);
  ASSERT_FALSE(r.critical_path.steps.empty());
  EXPECT_EQ(r.critical_path.steps[0].task, busy);
  EXPECT_EQ(r.critical_path.steps[1].task, c);
  EXPECT_EQ(r.critical_path.steps[1].via, Via::kResource);
  EXPECT_EQ(r.critical_path.steps[1].resource, r1);
}

TEST(Collectives, EmptyExpansionTakesNoTime) {
  Network net;
  net.add_node("a");
  Workload w;
  const TaskId c = w.add_collective("nothing", CollectiveSpec{{}, {0}, 10, nullptr});
  const TaskId d = w.add_delay("d", 1);
  w.add_dependency(c, d);
  const Result r = simulate(w, net);
  EXPECT_EQ(r.end[c], 0.0);
  EXPECT_EQ(r.end[d], 1.0);
}

}  // namespace
}  // namespace moesim::sim
