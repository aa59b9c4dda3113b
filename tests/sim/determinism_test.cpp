// Determinism: the same input gives the same timeline to the bit; adding independent tasks
// in another order gives the same timeline where the tie rule says it does (distinct
// priorities on queues), bit for bit without shared links and to rounding with them.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "sim/collectives.hpp"
#include "sim/engine.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

// A workload described by names, so it can be added in any order.
struct Item {
  std::string name;
  int kind = 0;       // 0 delay, 1 transfer, 2 collective
  double value = 0;   // seconds or bytes
  int resource = -1;  // index into resources, or -1
  int priority = 0;
  NodeId src = 0, dst = 0;
  std::vector<int> parties;
  std::vector<int> deps;  // indices of items that must end first
};

struct Described {
  std::vector<Item> items;
  std::vector<std::pair<std::string, QueueOrder>> resources;
};

// Random workload over `p` endpoints; with `disjoint`, transfers never share a link (each
// goes over its own pair link of a full mesh, one at a time per pair).
Described describe(std::mt19937_64& rng, int p, bool shared_links) {
  Described d;
  for (int r = 0; r < p; ++r) d.resources.emplace_back(testing::concat("gpu", r), QueueOrder::kInOrder);
  d.resources.emplace_back("pool", QueueOrder::kPriority);
  const int n = 200;
  for (int i = 0; i < n; ++i) {
    Item it;
    it.name = testing::concat("item", i);
    it.priority = i;  // distinct: the order on every queue is fixed by the description
    const int k = static_cast<int>(rng() % 10);
    if (k < 6) {
      it.kind = 0;
      it.value = static_cast<double>(rng() % 8) * 0.25;
      it.resource = static_cast<int>(rng() % (p + 2)) - 1;  // -1: none; p: the pool
    } else if (k < 9) {
      it.kind = 1;
      it.value = static_cast<double>(1 + rng() % 16) * 1048576.0;
      it.src = static_cast<NodeId>(rng() % p);
      it.dst = static_cast<NodeId>((it.src + 1 + rng() % (p - 1)) % p);
      if (!shared_links) it.resource = static_cast<int>(it.src);  // one transfer per source at a time
    } else {
      it.kind = 2;
      it.value = 8388608.0;
      for (int r = 0; r < p; ++r) {
        if (rng() % 2 || r == 0) it.parties.push_back(r);
      }
      if (it.parties.size() < 2) it.parties.push_back(1);
    }
    for (int j = 0; j < i; ++j) {
      if (rng() % 40 == 0) it.deps.push_back(j);
    }
    d.items.push_back(it);
  }
  return d;
}

struct Built {
  Workload w;
  std::map<std::string, TaskId> id;
};

Built build(const Described& d, const Network& net, const std::vector<int>& order) {
  Built b;
  std::vector<ResourceId> res;
  for (const auto& [name, o] : d.resources) res.push_back(b.w.add_resource(name, {.capacity = 1, .order = o}));
  for (const int i : order) {
    const Item& it = d.items[i];
    TaskOptions opt{.category = testing::concat("c", it.kind), .resource = kNoResource, .priority = it.priority};
    if (it.resource >= 0 && it.kind != 2) opt.resource = res[it.resource];
    TaskId t = 0;
    if (it.kind == 0) {
      t = b.w.add_delay(it.name, it.value, opt);
    } else if (it.kind == 1) {
      const Path path = net.shortest_path(it.src, it.dst);
      t = b.w.add_transfer(it.name, it.value, path, opt);
    } else {
      CollectiveSpec spec;
      for (const int party : it.parties) {
        spec.parties.push_back(res[party]);
        spec.endpoints.push_back(static_cast<NodeId>(party));
      }
      spec.bytes = it.value;
      spec.expansion = pairwise_all_to_all(shortest_path_routes(net));
      t = b.w.add_collective(it.name, spec, opt);
    }
    b.id[it.name] = t;
  }
  for (const int i : order) {
    for (const int j : d.items[i].deps) b.w.add_dependency(b.id[d.items[j].name], b.id[d.items[i].name]);
  }
  return b;
}

TEST(Determinism, SameInputTwiceGivesIdenticalResults) {
  std::mt19937_64 rng(99);
  const int p = 6;
  const Network net = testing::star(p, 1e9, 1e-6);
  const Described d = describe(rng, p, true);
  std::vector<int> order(d.items.size());
  std::iota(order.begin(), order.end(), 0);
  const Built b = build(d, net, order);
  const Result r1 = simulate(b.w, net);
  const Result r2 = simulate(b.w, net);
  EXPECT_EQ(r1.start, r2.start);
  EXPECT_EQ(r1.end, r2.end);
  ASSERT_EQ(r1.flows.size(), r2.flows.size());
  for (std::size_t k = 0; k < r1.flows.size(); ++k) {
    EXPECT_EQ(r1.flows[k].end, r2.flows[k].end);
    EXPECT_EQ(r1.flows[k].task, r2.flows[k].task);
  }
  for (std::size_t l = 0; l < r1.links.size(); ++l) EXPECT_EQ(r1.links[l].busy, r2.links[l].busy);
  ASSERT_EQ(r1.critical_path.steps.size(), r2.critical_path.steps.size());
  for (std::size_t k = 0; k < r1.critical_path.steps.size(); ++k) {
    EXPECT_EQ(r1.critical_path.steps[k].task, r2.critical_path.steps[k].task);
  }
  EXPECT_GT(r1.flows.size(), 50u);
  EXPECT_EQ(r1.stats.events, r2.stats.events);
}

void compare_by_name(const Described& d, const Network& net, std::mt19937_64& rng, bool exact) {
  std::vector<int> order(d.items.size());
  std::iota(order.begin(), order.end(), 0);
  const Built base = build(d, net, order);
  const Result r0 = simulate(base.w, net);
  for (int shuffle = 0; shuffle < 5; ++shuffle) {
    std::shuffle(order.begin(), order.end(), rng);
    const Built other = build(d, net, order);
    const Result r = simulate(other.w, net);
    for (const Item& it : d.items) {
      const TaskId a = base.id.at(it.name), b = other.id.at(it.name);
      if (exact) {
        ASSERT_EQ(r0.start[a], r.start[b]) << it.name;
        ASSERT_EQ(r0.end[a], r.end[b]) << it.name;
      } else {
        ASSERT_NEAR(r0.end[a], r.end[b], 1e-12 * r0.end[a]) << it.name;
      }
    }
  }
}

TEST(Determinism, InsertionOrderDoesNotChangeTheTimelineWithoutSharedLinks) {
  std::mt19937_64 rng(5);
  const int p = 6;
  // A full mesh with transfers serialised per source: no two flows ever share a link.
  const Network net = testing::full_mesh(p, 1073741824.0, 1.0 / 1048576);
  Described d = describe(rng, p, false);
  for (Item& it : d.items) {
    if (it.kind == 2) {  // collectives would share links with transfers: make them delays
      it.kind = 0;
      it.value = 0.5;
      it.resource = it.parties[0];
    }
  }
  compare_by_name(d, net, rng, true);
}

TEST(Determinism, InsertionOrderChangesSharedLinkTimelinesOnlyByRounding) {
  std::mt19937_64 rng(6);
  const int p = 6;
  const Network net = testing::star(p, 1e9, 1e-6);
  const Described d = describe(rng, p, true);
  compare_by_name(d, net, rng, false);
}

}  // namespace
}  // namespace moesim::sim
