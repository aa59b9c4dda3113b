// Pipeline schedules built from delays on in-order stage queues: GPipe and 1F1B over p
// stages and m micro-batches take (m+p-1)(tf+tb), with bubble fraction (p-1)/(m+p-1).
#include <gtest/gtest.h>

#include <vector>

#include "sim/engine.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

using testing::report;

struct Pipeline {
  Workload w;
  std::vector<ResourceId> stage;
  std::vector<std::vector<TaskId>> fwd, bwd;  // [stage][micro-batch]
};

// Stage s runs its tasks in the order `order(s)` gives: a list of (is_forward, micro-batch).
template <class Order>
Pipeline build(int p, int m, double tf, double tb, Order order) {
  Pipeline pl;
  pl.fwd.assign(p, std::vector<TaskId>(m));
  pl.bwd.assign(p, std::vector<TaskId>(m));
  for (int s = 0; s < p; ++s) {
    pl.stage.push_back(pl.w.add_resource(testing::concat("stage", s), {.group = "pipeline"}));
    const std::vector<std::pair<bool, int>> seq = order(s);
    for (int k = 0; k < static_cast<int>(seq.size()); ++k) {
      const auto [forward, i] = seq[k];
      const std::string name = testing::concat(forward ? "F" : "B", s, ".", i);
      const TaskOptions opt{.category = forward ? "forward" : "backward", .resource = pl.stage[s], .priority = k};
      (forward ? pl.fwd : pl.bwd)[s][i] = pl.w.add_delay(name, forward ? tf : tb, opt);
    }
  }
  for (int i = 0; i < m; ++i) {
    for (int s = 1; s < p; ++s) pl.w.add_dependency(pl.fwd[s - 1][i], pl.fwd[s][i]);
    pl.w.add_dependency(pl.fwd[p - 1][i], pl.bwd[p - 1][i]);
    for (int s = p - 1; s > 0; --s) pl.w.add_dependency(pl.bwd[s][i], pl.bwd[s - 1][i]);
  }
  return pl;
}

std::vector<std::pair<bool, int>> gpipe_order(int m) {
  std::vector<std::pair<bool, int>> seq;
  for (int i = 0; i < m; ++i) seq.emplace_back(true, i);
  for (int i = m - 1; i >= 0; --i) seq.emplace_back(false, i);
  return seq;
}

std::vector<std::pair<bool, int>> one_f_one_b_order(int p, int m, int s) {
  const int warmup = std::min(p - s - 1, m);
  std::vector<std::pair<bool, int>> seq;
  for (int i = 0; i < warmup; ++i) seq.emplace_back(true, i);
  for (int k = 0; k < m - warmup; ++k) {
    seq.emplace_back(true, warmup + k);
    seq.emplace_back(false, k);
  }
  for (int i = m - warmup; i < m; ++i) seq.emplace_back(false, i);
  return seq;
}

void check_pipeline(const Pipeline& pl, int p, int m, double tf, double tb, const std::string& what) {
  Network net;
  const Result r = simulate(pl.w, net);
  const double closed = (m + p - 1) * (tf + tb);
  report(what + testing::concat(" p=", p, " m=", m), closed, r.makespan);
  EXPECT_EQ(r.makespan, closed);  // integers: exact
  for (int s = 0; s < p; ++s) {
    const ResourceStats& st = r.resources[pl.stage[s]];
    EXPECT_EQ(st.busy, m * (tf + tb));
    // 1 - m(tf+tb) / ((m+p-1)(tf+tb)) against (p-1)/(m+p-1): different roundings.
    EXPECT_DOUBLE_EQ(1.0 - st.utilisation, static_cast<double>(p - 1) / (m + p - 1)) << "stage " << s;
  }
  // The critical path covers the makespan with forward and backward work only.
  const CriticalPath& cp = r.critical_path;
  EXPECT_EQ(cp.length, r.makespan);
  double covered = 0;
  for (const CategoryTime& c : cp.by_category) covered += c.seconds;
  EXPECT_EQ(covered, r.makespan);
  EXPECT_EQ(cp.steps.front().start, 0.0);
  for (std::size_t k = 1; k < cp.steps.size(); ++k) EXPECT_EQ(cp.steps[k].start, cp.steps[k - 1].end);
}

TEST(Pipeline, GPipeMakespanAndBubble) {
  for (const int p : {1, 2, 4, 8}) {
    for (const int m : {1, 2, 4, 8, 16}) {
      for (const auto& [tf, tb] : {std::pair{1.0, 1.0}, std::pair{1.0, 2.0}}) {
        const Pipeline pl = build(p, m, tf, tb, [m = m](int) { return gpipe_order(m); });
        check_pipeline(pl, p, m, tf, tb, "GPipe");
      }
    }
  }
}

TEST(Pipeline, OneFOneBMakespanAndBubble) {
  for (const int p : {2, 4, 8}) {
    for (const int m : {4, 8, 16}) {
      for (const auto& [tf, tb] : {std::pair{1.0, 1.0}, std::pair{1.0, 2.0}}) {
        const Pipeline pl = build(p, m, tf, tb, [p = p, m = m](int s) { return one_f_one_b_order(p, m, s); });
        check_pipeline(pl, p, m, tf, tb, "1F1B");
      }
    }
  }
}

TEST(Pipeline, CriticalPathOfGPipeIsBubblePlusOneStageOfWork) {
  // Unit times: the path runs the first stage's forwards (m), down the stages (p-1), then
  // the last stage's backwards and back up; forward and backward time split evenly.
  const int p = 4, m = 6;
  const Pipeline pl = build(p, m, 1.0, 1.0, [](int) { return gpipe_order(m); });
  Network net;
  const Result r = simulate(pl.w, net);
  ASSERT_EQ(r.critical_path.by_category.size(), 2u);
  EXPECT_EQ(r.critical_path.by_category[0].seconds, m + p - 1.0);
  EXPECT_EQ(r.critical_path.by_category[1].seconds, m + p - 1.0);
  EXPECT_EQ(r.critical_path.steps.size(), static_cast<std::size_t>(2 * (m + p - 1)));
}

}  // namespace
}  // namespace moesim::sim
