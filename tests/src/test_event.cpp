// The event tier: pipeline schedules, bucketed gradient reduction and FSDP prefetch on the
// engine against their closed forms (synthetic stage costs, exact to rounding), and the
// tier end to end on a seed config with its trace.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "sim/engine.hpp"
#include "sim/network.hpp"
#include "src/accounting/memory.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/event.hpp"
#include "src/simulate/pipeline_lowering.hpp"

namespace moesim {
namespace {

double makespan(const std::vector<StageWork>& stages, Schedule s, int m) {
  const LoweredIteration l = lower_iteration(stages, s, m);
  return sim::simulate(l.workload, sim::Network{}).makespan;
}

TEST(EventTier, OneFOneBOrderHasWarmupSteadyAndCooldown) {
  std::string got;
  for (const Pass& p : stage_order(Schedule::one_f_one_b, 1, 4, 5)) got += (p.forward ? "F" : "B") + std::to_string(p.micro_batch) + " ";
  EXPECT_EQ(got, "F0 F1 F2 B0 F3 B1 F4 B2 B3 B4 ");
  got.clear();
  for (const Pass& p : stage_order(Schedule::one_f_one_b, 3, 4, 2)) got += (p.forward ? "F" : "B") + std::to_string(p.micro_batch) + " ";
  EXPECT_EQ(got, "F0 B0 F1 B1 ");
  // Interleaved (Megatron): stage 0 of 2, 2 chunks, 4 micro-batches: 2 (pp - 1) + (vpp - 1) pp
  // = 4 warm-up forwards, chunks taken pp micro-batches at a time, backwards chunk-reversed.
  got.clear();
  for (const Pass& p : stage_order(Schedule::interleaved, 0, 2, 4, 2))
    got += (p.forward ? "F" : "B") + std::to_string(p.micro_batch) + "c" + std::to_string(p.chunk) + " ";
  EXPECT_EQ(got, "F0c0 F1c0 F0c1 F1c1 F2c0 B0c1 F3c0 B1c1 F2c1 B0c0 F3c1 B1c0 B2c1 B3c1 B2c0 B3c0 ");
  EXPECT_THROW(stage_order(Schedule::interleaved, 0, 4, 6, 2), std::runtime_error);
}

TEST(EventTier, InterleavedBubbleShrinksByTheChunkCount) {
  // Equal stages, free sends: m (f + b) + (pp - 1)(f + b) / vpp.
  const double f = 1.0, b = 2.0;
  for (int pp : {2, 4}) {
    for (int vpp : {2, 3}) {
      for (int m : {pp, 2 * pp, 4 * pp}) {
        std::vector<StageWork> stages(static_cast<std::size_t>(pp));
        for (StageWork& w : stages) {
          w.forward = f;
          w.backward = b;
        }
        SCOPED_TRACE("pp " + std::to_string(pp) + " vpp " + std::to_string(vpp) + " m " + std::to_string(m));
        const LoweredIteration l = lower_iteration(stages, Schedule::interleaved, m, true, vpp);
        EXPECT_NEAR(sim::simulate(l.workload, sim::Network{}).makespan, m * (f + b) + (pp - 1) * (f + b) / vpp, 1e-12);
      }
    }
  }
}

TEST(EventTier, PipelineMakespanIsTheClosedForm) {
  // Equal stages, free sends: (m + p - 1)(f + b) + optimizer for GPipe and 1F1B, a bubble
  // fraction of (p - 1) / (m + p - 1). GPipe with sends of s: 2 (p - 1) s more (the fill
  // and the drain each cross p - 1 links). 1F1B pays sends in its steady state too, so it
  // is only bounded below by that.
  const double f = 1.0, b = 2.0, s = 0.25, opt = 0.5;
  for (int pp : {1, 2, 4}) {
    for (int m : {1, 4, 8}) {
      for (Schedule sched : {Schedule::gpipe, Schedule::one_f_one_b}) {
        std::vector<StageWork> stages(static_cast<std::size_t>(pp));
        for (StageWork& w : stages) {
          w.forward = f;
          w.backward = b;
          w.send_forward = w.send_backward = s;
          w.optimizer = opt;
        }
        SCOPED_TRACE("pp " + std::to_string(pp) + " m " + std::to_string(m) +
                     (sched == Schedule::gpipe ? " gpipe" : " 1f1b"));
        const double with_sends = (m + pp - 1) * (f + b) + 2 * (pp - 1) * s + opt;
        if (sched == Schedule::gpipe)
          EXPECT_NEAR(makespan(stages, sched, m), with_sends, 1e-12);
        else
          EXPECT_GE(makespan(stages, sched, m), with_sends - 1e-12);
        for (StageWork& w : stages) w.send_forward = w.send_backward = 0;
        const double t = makespan(stages, sched, m) - opt;
        EXPECT_NEAR((t - m * (f + b)) / t, (pp - 1.0) / (m + pp - 1.0), 1e-12);
      }
    }
  }
}

TEST(EventTier, BucketedGradientReductionExposesOnlyWhatTheLastBackwardCannotHide) {
  // K buckets of d/K after chunks of b/K: the reduction ends max(d/K, b/K + d - b) after
  // the last backward.
  const double f = 1.0, b = 2.0;
  for (double d : {0.5, 1.0, 3.0, 8.0}) {
    for (int k : {1, 4}) {
      StageWork w;
      w.forward = f;
      w.backward = b;
      w.grad_reduce = d;
      w.buckets = k;
      const int m = 3;
      SCOPED_TRACE("d " + std::to_string(d) + " buckets " + std::to_string(k));
      EXPECT_NEAR(makespan({w}, Schedule::one_f_one_b, m), m * (f + b) + std::max(d / k, b / k + d - b), 1e-12);
    }
  }
}

TEST(EventTier, FsdpGathersArePrefetchedBehindCompute) {
  // Gathers no longer than the passes they precede: only the first is exposed.
  StageWork w;
  w.forward = 1.0;
  w.backward = 2.0;
  w.fsdp_gather = 0.75;
  EXPECT_NEAR(makespan({w}, Schedule::one_f_one_b, 4), 0.75 + 4 * 3.0, 1e-12);
  // Longer ones set the pace: the stream of 2m gathers, then the last backward.
  w.fsdp_gather = 2.5;
  EXPECT_NEAR(makespan({w}, Schedule::one_f_one_b, 4), 8 * 2.5 + 2.0, 1e-12);
}

TEST(EventTier, ActivationsInFlightOnTheTimelineEqualTheScheduleClosedForms) {
  // 1F1B holds min(pp - stage, m) micro-batches on a stage, GPipe all m, interleaved
  // min(2 (pp - stage - 1) + (vpp - 1) pp + 1, m vpp) chunks.
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100.json");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  for (const char* plan : {"dp=2,pp=4,mbs=1,gbs=16", "dp=2,pp=4,mbs=1,gbs=16,schedule=gpipe", "dp=1,pp=8,mbs=1,gbs=4",
                           "dp=2,pp=4,mbs=1,gbs=16,schedule=interleaved,vpp=2",
                           "dp=1,pp=4,mbs=1,gbs=4,schedule=interleaved,vpp=3"}) {
    SCOPED_TRACE(plan);
    const Plan p = parse_inline_plan(plan);
    const SimResult e = simulate_event(m, p, c, prof);
    const StageMemory closed = peak_memory(m, p);
    EXPECT_EQ(e.memory.stage, closed.stage);
    EXPECT_EQ(e.memory.in_flight_micro_batches, closed.in_flight_micro_batches);
    EXPECT_EQ(e.memory.bytes.total(), closed.bytes.total());
  }
}

TEST(EventTier, SeedConfigRunsAndWritesATrace) {
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100.json");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const std::string trace = ::testing::TempDir() + "moesim_event_trace.json";
  for (const char* plan : {"dp=8,ep=8,mbs=4,gbs=32", "dp=2,pp=4,mbs=1,gbs=16"}) {
    SCOPED_TRACE(plan);
    const Plan p = parse_inline_plan(plan);
    const SimResult e = simulate_event(m, p, c, prof, nullptr, trace);
    const SimResult a = simulate_analytic(m, p, c, prof);
    EXPECT_EQ(e.mode, "event");
    double parts = e.breakdown.bubble + e.breakdown.optimizer;
    for (const auto& [k, v] : e.breakdown.compute) parts += v;
    for (const auto& [k, v] : e.breakdown.exposed_comm) parts += v;
    EXPECT_NEAR(parts, e.iteration_s, 1e-9 * e.iteration_s);  // the breakdown adds up
    std::printf("%s: event %.4f s, analytic %.4f s\n", plan, e.iteration_s, a.iteration_s);
    std::ifstream in(trace);
    const auto j = nlohmann::json::parse(in);
    EXPECT_GT(j["traceEvents"].size(), 10u);
  }
  std::remove(trace.c_str());
}

}  // namespace
}  // namespace moesim
