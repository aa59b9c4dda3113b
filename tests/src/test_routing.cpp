// Routing models: parsing, the Gumbel-max first choices of Zipf routing, fairseq's drop
// rule on a hand-made trace (exact counts), the most-loaded rank, and how a dropless
// plan's expert compute follows the routing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "src/cluster/cluster_spec.hpp"
#include "src/core/error.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/dense_to_sparse.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/analytic.hpp"

namespace moesim {
namespace {

TEST(Routing, ParsesItsForms) {
  EXPECT_EQ(parse_routing("uniform").kind, RoutingKind::uniform);
  EXPECT_EQ(parse_routing("balanced").kind, RoutingKind::balanced);
  EXPECT_EQ(to_string(parse_routing("balanced")), "balanced");
  const RoutingSpec z = parse_routing("zipf:1.5");
  EXPECT_EQ(z.kind, RoutingKind::zipf);
  EXPECT_EQ(z.zipf_s, 1.5);
  EXPECT_EQ(to_string(z), "zipf:1.5");
  EXPECT_EQ(parse_routing("trace:t.json").trace, "t.json");
  const RoutingSpec a = parse_routing("aux_free:1.2");
  EXPECT_EQ(a.kind, RoutingKind::aux_free);
  EXPECT_EQ(a.zipf_s, 1.2);
  EXPECT_EQ(to_string(a), "aux_free:1.2");
  for (const char* bad : {"zipf:", "zipf:-1", "zipf:1x", "trace:", "skewed", "aux_free:", "aux_free:-2"}) {
    try {
      parse_routing(bad);
      FAIL() << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("--routing: expected uniform, balanced, zipf:S (S >= 0), aux_free:S (S >= 0) or trace:FILE, "
                            "got \"") + bad + "\"");
    }
  }
}

ModelSpec dropless_top2(int experts) {
  ModelSpec m = load_model("configs/models/openlm-410m-e8.json");
  m.moe.experts = experts;
  m.moe.capacity_factor.reset();
  return m;
}

TEST(Routing, ZipfFirstChoicesFollowTheirWeights) {
  // Gumbel-max: argmax(log w + G) is e with probability w_e / sum w, whatever the noise.
  const ModelSpec m = dropless_top2(4);
  RoutingSpec r = parse_routing("zipf:1");
  const std::int64_t tokens = 200000;
  const ExpertLoad load = route_tokens(m, r, tokens);
  ASSERT_FALSE(load.capacity);
  double kept = 0, demand = 0;
  for (int e = 0; e < 4; ++e) {
    kept += load.kept[static_cast<std::size_t>(e)];
    demand += load.demand[static_cast<std::size_t>(e)];
  }
  EXPECT_EQ(kept, demand);  // dropless
  EXPECT_EQ(demand, 2.0 * static_cast<double>(tokens));
  // The hottest expert's share of first choices: 1 / H_4 = 12/25, within 4 sigma.
  const double expected = 12.0 / 25.0, sigma = std::sqrt(expected * (1 - expected) / static_cast<double>(tokens));
  EXPECT_NEAR(load.stats.expert1_balance_top / 100.0, expected, 4 * sigma);
}

TEST(Routing, AuxLossFreeBiasBalancesASkewedRouter) {
  // DeepSeek-V3's rule moves each bias by gamma = 0.001 a step, down when the expert was
  // overloaded, up when underloaded: after 1,000 steps every bias is a whole number of
  // steps within [-1, 1], the hottest experts' the lowest, and the skew is mostly gone.
  for (const RouterScore score : {RouterScore::sigmoid, RouterScore::softmax}) {
    SCOPED_TRACE(to_string(score));
    ModelSpec m = dropless_top2(16);
    m.moe.router_score = score;
    const RoutingSpec skewed = parse_routing("zipf:1.5"), balanced = parse_routing("aux_free:1.5");
    const std::vector<double> bias = aux_free_bias(m, balanced);
    ASSERT_EQ(bias.size(), 16u);
    for (double b : bias) {
      EXPECT_NEAR(b / kAuxFreeBiasSpeed, std::round(b / kAuxFreeBiasSpeed), 1e-6) << b;
      EXPECT_LE(std::abs(b), kAuxFreeUpdates * kAuxFreeBiasSpeed + 1e-12);
    }
    const std::vector<double> w = expert_weights(balanced, 16);
    const auto hottest = std::max_element(w.begin(), w.end()) - w.begin();
    const auto coldest = std::min_element(w.begin(), w.end()) - w.begin();
    EXPECT_EQ(std::min_element(bias.begin(), bias.end()) - bias.begin(), hottest);
    EXPECT_GT(bias[static_cast<std::size_t>(coldest)], 0.0);
    // The micro-batch routed with those biases: the busiest expert near its share.
    auto max_over_mean = [&](const RoutingSpec& r) {
      const ExpertLoad l = route_tokens(m, r, 8192);
      const double mean = 8192.0 * 2 / 16;
      return *std::max_element(l.demand.begin(), l.demand.end()) / mean;
    };
    EXPECT_GT(max_over_mean(skewed), 3.0);
    EXPECT_LT(max_over_mean(balanced), 1.25);
    // Deterministic: the same seed, the same biases.
    EXPECT_EQ(aux_free_bias(m, balanced), bias);
  }
}

TEST(Routing, GroupLimitedRoutingKeepsTheBestGroupsByTheirTwoBestScores) {
  // 8 experts in 4 groups of 2, 2 groups per token. Group sums of the two best keys:
  // token 0: {0.9+0.1, 0.5+0.4, 0.3+0.0, 0.8+0.3} = {1.0, 0.9, 0.3, 1.1}: groups 3 and 0
  // stay (a token's single best expert, 0.9, does not decide alone).
  // token 1: every group sums 1.0: the lowest two, 0 and 1, stay.
  MoeSpec moe;
  moe.experts = 8;
  moe.top_k = 2;
  moe.expert_groups = 4;
  moe.groups_per_token = 2;
  std::vector<float> keys = {0.9f, 0.1f, 0.5f, 0.4f, 0.3f, 0.0f, 0.8f, 0.3f,  //
                             0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  limit_groups(moe, keys);
  const float x = -INFINITY;
  EXPECT_EQ(keys, (std::vector<float>{0.9f, 0.1f, x, x, x, x, 0.8f, 0.3f,  //
                                      0.5f, 0.5f, 0.5f, 0.5f, x, x, x, x}));
  // No groups: nothing changes.
  std::vector<float> same = {1, 2, 3, 4, 5, 6, 7, 8};
  MoeSpec plain = moe;
  plain.expert_groups = plain.groups_per_token = 0;
  limit_groups(plain, same);
  EXPECT_EQ(same, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
  // One group per token with experts hot in every group: each token's two choices share a
  // group, so no token ever reaches all four groups' hottest experts at once; and with every
  // group allowed the routing is the unlimited one.
  ModelSpec m = dropless_top2(16);
  m.moe.top_k = 4;
  const RoutingSpec zipf = parse_routing("zipf:1");
  const ExpertLoad free = route_tokens(m, zipf, 4096);
  m.moe.expert_groups = 4;
  m.moe.groups_per_token = 4;
  EXPECT_EQ(route_tokens(m, zipf, 4096).demand, free.demand);
  m.moe.groups_per_token = 1;
  const ExpertLoad limited = route_tokens(m, zipf, 4096);
  EXPECT_NE(limited.demand, free.demand);
  double total = 0;
  for (double d : limited.demand) total += d;
  EXPECT_EQ(total, 4096.0 * 4);  // dropless: every token still gets its four experts
}

TEST(Routing, TraceDropsByFairseqsRuleExactly) {
  // 100 tokens, 4 experts, top-2, capacity 2 * ceil(1.0 * 100 / 4) = 50 per expert.
  ModelSpec m = dropless_top2(4);
  m.moe.capacity_factor = 1.0;
  m.moe.capacity_rounding = CapacityRounding::per_choice;
  const std::string path = ::testing::TempDir() + "moesim_trace.json";
  {
    std::ofstream f(path);
    f << R"({"experts": 4, "top_k": 2, "tokens": 100, "expert1": [60, 20, 15, 5], "expert2": [10, 30, 40, 20]})";
  }
  const ExpertLoad load = route_tokens(m, parse_routing("trace:" + path), 100);
  ASSERT_EQ(load.capacity, 50);
  // First choices fill first (60 -> 50 kept); second choices take the slots left after
  // all first choices: 50-60 < 0 -> 0, 50-20 = 30 of 30, 50-15 = 35 of 40, 45 of 20 -> 20.
  EXPECT_EQ(load.kept, (std::vector<double>{50, 50, 50, 25}));
  EXPECT_EQ(load.demand, (std::vector<double>{70, 50, 55, 25}));
  EXPECT_NEAR(load.stats.overflow_expert1, 10.0, 1e-12);       // 10 of 100 first choices
  EXPECT_NEAR(load.stats.overflow_expert2, 100.0 * 15 / 100, 1e-12);  // 10 + 5 of 100 second choices
  EXPECT_FALSE(load.has_entropy);
  const RankLoad two = rank_load(load, 2);  // experts {0,1} and {2,3}, each receiving 2 ranks' tokens
  EXPECT_EQ(two.max_tokens, 2 * 100.0);
  EXPECT_EQ(two.max_rank, 0);
  EXPECT_EQ(two.mean_tokens, (2 * 100.0 + 2 * 75.0) / 2);
  // Round robin puts experts {0,2} and {1,3} together: 100 and 75 kept, the same total.
  const RankLoad spread = rank_load(load, 2, ExpertPlacement::round_robin);
  EXPECT_EQ(spread.max_tokens, 2 * 100.0);
  EXPECT_EQ(spread.max_rank, 0);
  EXPECT_EQ(spread.mean_tokens, two.mean_tokens);
  std::remove(path.c_str());
}

TEST(Routing, RoundRobinPlacementSpreadsHotExperts) {
  ExpertLoad load;
  load.experts = 4;
  load.kept = {40, 30, 20, 10};  // hottest first, as a sorted skew leaves them
  const RankLoad block = rank_load(load, 2);                               // {40+30}, {20+10}
  const RankLoad spread = rank_load(load, 2, ExpertPlacement::round_robin);  // {40+20}, {30+10}
  EXPECT_EQ(block.max_tokens, 2 * 70.0);
  EXPECT_EQ(spread.max_tokens, 2 * 60.0);
  EXPECT_EQ(spread.max_rank, 0);
  EXPECT_EQ(block.mean_tokens, spread.mean_tokens);
  // One expert per rank, or one rank for all: placement changes nothing.
  EXPECT_EQ(rank_load(load, 4).max_tokens, rank_load(load, 4, ExpertPlacement::round_robin).max_tokens);
  EXPECT_EQ(rank_load(load, 1).max_tokens, rank_load(load, 1, ExpertPlacement::round_robin).max_tokens);
}

// Forced balance: every expert gets tokens * k / E choices exactly, every rank the same
// load, nothing dropped at fairseq's capacity, uniform gate entropy; a capacity below the
// share drops exactly the excess.
TEST(Routing, BalancedGivesEveryExpertItsShare) {
  ModelSpec m = dropless_top2(8);
  const ExpertLoad load = route_tokens(m, parse_routing("balanced"), 4096);
  for (int e = 0; e < 8; ++e) {
    EXPECT_EQ(load.demand[static_cast<std::size_t>(e)], 4096.0 * 2 / 8);
    EXPECT_EQ(load.kept[static_cast<std::size_t>(e)], 4096.0 * 2 / 8);
  }
  const RankLoad ranks = rank_load(load, 4);
  EXPECT_EQ(ranks.max_tokens, ranks.mean_tokens);
  EXPECT_EQ(load.stats.unused_expert1_count, 0);
  EXPECT_EQ(load.stats.overflow_expert1, 0);
  EXPECT_NEAR(load.stats.entropy_gating, std::log(8.0), 1e-12);
  EXPECT_EQ(load.stats.expert1_balance_top, load.stats.expert1_balance_bottom);

  m.moe.capacity_factor = 0.5;  // per_choice: 2 * ceil(0.5 * 4096 / 8) = 512 slots < 1024 choices
  m.moe.capacity_rounding = CapacityRounding::per_choice;
  const ExpertLoad capped = route_tokens(m, parse_routing("balanced"), 4096);
  ASSERT_EQ(capped.capacity, std::optional<std::int64_t>(512));
  for (int e = 0; e < 8; ++e) EXPECT_EQ(capped.kept[static_cast<std::size_t>(e)], 512.0);
  EXPECT_EQ(capped.stats.overflow_expert1, 0);    // first choices (512 per expert) all fit
  EXPECT_EQ(capped.stats.overflow_expert2, 100);  // the slots are gone when second choices come
}

TEST(Routing, BadTracesNameTheField) {
  const std::string path = ::testing::TempDir() + "moesim_bad_trace.json";
  {
    std::ofstream f(path);
    f << R"({"experts": 8, "top_k": 2, "tokens": 10, "expert1": [1, 2], "expert2": [0, 0]})";
  }
  try {
    route_tokens(dropless_top2(8), parse_routing("trace:" + path), 10);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": field 'expert1': expected 8 token counts, one per expert");
  }
  std::remove(path.c_str());
}

TEST(Routing, DroplessExpertComputeFollowsTheMostLoadedRank) {
  const ModelSpec m = dropless_top2(8);
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100.json");
  const Plan p = parse_inline_plan("dp=8,ep=8,mbs=2,gbs=16");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const std::int64_t tokens = 2 * m.seq_len;
  const ExpertLoad uniform = route_tokens(m, parse_routing("uniform"), tokens);
  const ExpertLoad skewed = route_tokens(m, parse_routing("zipf:1.2"), tokens);
  const SimResult a = simulate_analytic(m, p, c, prof, &uniform), b = simulate_analytic(m, p, c, prof, &skewed);
  const SimResult mean = simulate_analytic(m, p, c, prof);
  EXPECT_FALSE(mean.balance.present);
  ASSERT_TRUE(b.balance.present);
  // One expert per rank: the busiest rank computes its expert's tokens from all 8 ranks.
  double hottest = 0;
  for (double k : skewed.kept) hottest = std::max(hottest, k);
  EXPECT_EQ(b.balance.max_tokens_per_rank, 8 * hottest);
  EXPECT_EQ(b.balance.mean_tokens_per_rank, 2.0 * static_cast<double>(tokens));
  EXPECT_GT(b.breakdown.compute.at("moe_experts"), 1.5 * a.breakdown.compute.at("moe_experts"));
  EXPECT_GT(a.breakdown.compute.at("moe_experts"), mean.breakdown.compute.at("moe_experts"));
  std::printf("moe_experts s/iteration: mean load %.4f, uniform %.4f, zipf:1.2 %.4f (max/mean tokens %.3f)\n",
              mean.breakdown.compute.at("moe_experts"), a.breakdown.compute.at("moe_experts"),
              b.breakdown.compute.at("moe_experts"), b.balance.max_tokens_per_rank / b.balance.mean_tokens_per_rank);
}

}  // namespace
}  // namespace moesim

namespace moesim {
namespace {

ModelSpec evomoe() { return load_model("configs/models/evomoe-gptxl-16e.json"); }

TEST(DenseToSparse, PhasesFollowTheSchedule) {
  const ModelSpec m = evomoe();  // 16 experts, dense 5,000 updates, anneal 2.0 -> 0.3 over 20,000, top-1
  const RoutingSpec uniform = parse_routing("uniform");
  const GateAtStep dense = gate_at_step(m, uniform, 0);
  EXPECT_EQ(dense.phase, "dense");
  EXPECT_EQ(dense.top_k, 16);
  EXPECT_EQ(gate_at_step(m, uniform, 4999).phase, "dense");
  const GateAtStep mid = gate_at_step(m, uniform, 5000 + 10000);
  EXPECT_EQ(mid.phase, "annealing");
  EXPECT_DOUBLE_EQ(mid.temperature, (2.0 + 0.3) / 2);  // linear in the update
  const GateAtStep sparse = gate_at_step(m, uniform, 25000);
  EXPECT_EQ(sparse.phase, "sparse");
  EXPECT_EQ(sparse.top_k, 1);
  EXPECT_EQ(model_at_step(m, uniform, 25000).moe.top_k, m.moe.top_k);
  EXPECT_EQ(model_at_step(m, uniform, 0).moe.top_k, 16);
  // A model without the schedule is always its own top-k.
  const ModelSpec plain = load_model("configs/models/fairseq-moe-4.1b.json");
  EXPECT_EQ(gate_at_step(plain, uniform, 0).phase, "sparse");
  EXPECT_EQ(model_at_step(plain, uniform, 0).moe.top_k, 2);
}

TEST(DenseToSparse, ActiveExpertsFallAsTheTemperatureDoes) {
  const ModelSpec m = evomoe();
  const RoutingSpec uniform = parse_routing("uniform");
  double previous = 17;
  for (std::int64_t step = 5000; step < 25000; step += 2000) {
    const GateAtStep g = gate_at_step(m, uniform, step);
    EXPECT_LE(g.active_experts, previous) << step;
    EXPECT_GE(g.active_experts, 1.0);
    EXPECT_LE(g.active_experts, 16.0);
    previous = g.active_experts;
  }
  EXPECT_LT(gate_at_step(m, uniform, 24999).active_experts, gate_at_step(m, uniform, 5000).active_experts);
  // Closed forms: a threshold of 0 lets every expert through; a temperature so high the
  // softmax is flat (1/16 each, over 0.001) does too.
  ModelSpec open = m;
  open.moe.dense_to_sparse->threshold = 0;
  EXPECT_EQ(gate_at_step(open, uniform, 6000).active_experts, 16.0);
  ModelSpec hot = m;
  hot.moe.dense_to_sparse->temperature_start = 1e12;
  hot.moe.dense_to_sparse->temperature_end = 1e12;
  EXPECT_EQ(gate_at_step(hot, uniform, 6000).active_experts, 16.0);
  // A threshold no weight can pass leaves the final top-k.
  ModelSpec closed = m;
  closed.moe.dense_to_sparse->threshold = 1.0;
  const GateAtStep none = gate_at_step(closed, uniform, 6000);
  EXPECT_EQ(none.active_experts, 1.0);
  EXPECT_EQ(none.top_k, 1);
}

}  // namespace
}  // namespace moesim
