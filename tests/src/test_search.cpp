// The plan search: its enumeration against a brute-force reference and the validation
// rules, its winner against simulating every plan, constraints, ties, baselines and the
// explanation sentence. Run from the repository root (configs/, profiles/).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "src/accounting/memory.hpp"
#include "src/comm/self_communicator.hpp"
#include "src/core/error.hpp"
#include "src/model/model_json.hpp"
#include "src/search/explain.hpp"
#include "src/search/search.hpp"
#include "src/search/search_report.hpp"
#include "src/simulate/event.hpp"

namespace moesim {
namespace {

struct Inputs {
  ModelSpec model;
  ClusterSpec cluster;
  Profile profile;
};

Inputs inputs(const std::string& model, const std::string& cluster) {
  Inputs in{load_model("configs/models/" + model + ".json"), load_cluster("configs/clusters/" + cluster + ".json"), {}};
  in.profile = load_profile(default_profile_path(in.cluster));
  return in;
}

SearchSpace space_with(std::int64_t gbs, DType precision = DType::bf16) {
  SearchSpace s;
  s.base.gbs = gbs;
  s.base.precision = precision;
  s.base.master_weights = true;
  return s;
}

bool valid(const Plan& p, const ModelSpec& m, const ClusterSpec& c) {
  try {
    check_plan_rules(p, "plan");
    check_plan(p, m, "plan");
    check_plan(p, c, "plan");
    return true;
  } catch (const InputError&) {
    return false;
  }
}

// The reference: every combination of field values in a box wide enough to hold every
// plan, kept when the validation rules accept it and it is not a listed equivalent. The
// shape (dp, tp, pp, cp, ep, etp, sp) is validated first with the most lenient batching
// (mbs 1, 1F1B, no vpp, ZeRO 0, no recomputation): a shape that fails there fails with
// every other, since those rules only add conditions.
std::set<std::string> brute_force(const ModelSpec& m, const ClusterSpec& c, const SearchSpace& s) {
  std::set<std::string> out;
  const int world = s.gpus > 0 ? s.gpus : c.total_gpus();
  const int max_tp = s.max_tp > 0 ? s.max_tp : c.gpus_per_node;
  const int max_cp = s.max_cp > 0 ? s.max_cp : c.gpus_per_node;
  for (int dp = 1; dp <= world; ++dp)
    for (int tp = 1; tp <= std::min(world, max_tp); ++tp)
      for (int cp = 1; cp <= std::min(world, max_cp); ++cp)
        for (int pp = 1; pp <= world; ++pp) {
          if (dp * tp * pp * cp != world || (s.max_pp > 0 && pp > s.max_pp)) continue;
          for (int ep = 1; ep <= world; ++ep)
            for (int etp = 0; etp <= world; ++etp)
              for (bool sp : {false, true}) {
                // Listed: experts split as attention (unset) or whole; sp wherever tp is.
                if (etp > 1 || (etp == 1 && tp == 1) || sp != (tp > 1)) continue;
                Plan shape = s.base;
                shape.dp = dp, shape.tp = tp, shape.pp = pp, shape.cp = cp, shape.ep = ep, shape.etp = etp, shape.sp = sp;
                shape.mbs = 1, shape.schedule = Schedule::one_f_one_b, shape.vpp = 1, shape.zero = 0;
                shape.recompute = Recompute::none, shape.placement = ExpertPlacement::contiguous;
                if (!valid(shape, m, c)) continue;
                for (int mbs = 1; mbs <= s.max_mbs; ++mbs)
                  for (Schedule sched : {Schedule::gpipe, Schedule::one_f_one_b, Schedule::interleaved})
                    for (int vpp = 1; vpp <= m.layers; ++vpp)
                      for (int zero = 0; zero <= 3; ++zero)
                        for (Recompute rc : {Recompute::none, Recompute::selective, Recompute::full})
                          for (ExpertPlacement pl : {ExpertPlacement::contiguous, ExpertPlacement::round_robin}) {
                            if (dp == 1 && zero != 0) continue;
                            if (pp == 1 && sched != Schedule::one_f_one_b) continue;
                            const bool placement_matters =
                                s.placements && ep > 1 && ep < (m.is_moe() ? m.moe.experts : 1);
                            if (!placement_matters && pl != ExpertPlacement::contiguous) continue;
                            Plan p = shape;
                            p.mbs = mbs, p.schedule = sched, p.vpp = vpp, p.zero = zero, p.recompute = rc, p.placement = pl;
                            if (valid(p, m, c)) out.insert(plan_to_inline(p));
                          }
              }
        }
  return out;
}

std::set<std::string> enumerated(const ModelSpec& m, const ClusterSpec& c, const SearchSpace& s) {
  std::set<std::string> out;
  for (const Plan& p : enumerate_plans(m, c, s)) {
    EXPECT_TRUE(out.insert(plan_to_inline(p)).second) << "listed twice: " << plan_to_inline(p);
  }
  return out;
}

TEST(SearchSpace, EnumerationEqualsBruteForceAndEveryPlanIsValid) {
  struct Case {
    const char* model;
    const char* cluster;
    std::int64_t gbs;
    int gpus, max_mbs;
    bool placements;
  };
  for (const Case& k : {Case{"openlm-41m-e8", "dgx-a100", 32, 8, 8, false}, Case{"openlm-41m-e8", "dgx-a100", 48, 8, 6, true},
                        Case{"fairseq-moe-4.1b", "dgx1-v100", 16, 4, 4, false},
                        Case{"openlm-87m-e1", "dgx-a100", 24, 6, 4, false},
                        // Flash attention: context parallelism joins the factorisations.
                        Case{"openlm-41m-e8", "dgx-h100", 16, 8, 4, false}, Case{"openlm-87m-e1", "dgx-h100", 8, 8, 2, false}}) {
    SCOPED_TRACE(std::string(k.model) + " gbs " + std::to_string(k.gbs));
    const Inputs in = inputs(k.model, k.cluster);
    SearchSpace s = space_with(k.gbs, DType::fp16);
    if (std::string(k.cluster) == "dgx-h100") s.base.attention = AttentionImpl::flash;
    s.gpus = k.gpus;
    s.max_mbs = k.max_mbs;
    s.placements = k.placements;
    const std::set<std::string> got = enumerated(in.model, in.cluster, s);
    EXPECT_EQ(got, brute_force(in.model, in.cluster, s));
    EXPECT_GT(got.size(), 20u);
    for (const Plan& p : enumerate_plans(in.model, in.cluster, s)) {
      EXPECT_TRUE(valid(p, in.model, in.cluster)) << plan_to_inline(p);
      EXPECT_EQ(p.world(), k.gpus);
      EXPECT_EQ(p.global_batch(), k.gbs);
    }
  }
}

TEST(SearchSpace, FixPinsFieldsAndSetsBaseFields) {
  const Inputs in = inputs("fairseq-moe-4.1b", "dgx-a100");
  SearchSpace s = space_with(32);
  apply_fixed(s, "tp=1,zero=3,precision=fp16,attention=unfused", "--fix");
  EXPECT_EQ(s.base.precision, DType::fp16);
  EXPECT_EQ(s.fixed, (std::set<std::string>{"tp", "zero"}));
  const std::vector<Plan> plans = enumerate_plans(in.model, in.cluster, s);
  ASSERT_FALSE(plans.empty());
  for (const Plan& p : plans) {
    EXPECT_EQ(p.tp, 1);
    EXPECT_TRUE(p.zero == 3 || p.dp == 1) << plan_to_inline(p);
    EXPECT_EQ(p.attention, AttentionImpl::unfused);
  }
  SearchSpace capped = space_with(32);
  capped.max_pp = 2;
  for (const Plan& p : enumerate_plans(in.model, in.cluster, capped)) EXPECT_LE(p.pp, 2);
  try {
    apply_fixed(s, "tpp=2", "--fix");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--fix: field 'tpp': expected a plan field (dp, tp, pp, ep, mbs, gbs, zero", 0), 0u) << e.what();
  }
  EXPECT_THROW(apply_fixed(s, "zero=7", "--fix"), InputError);
  EXPECT_THROW(apply_fixed(s, "recompute=sometimes", "--fix"), InputError);
}

TEST(SearchSpace, SeedPlansAreInTheirSpaces) {
  // Acceptance: seed 001's plans (expert per GPU, FSDP, full recomputation) are scored.
  struct Case {
    const char* model;
    const char* cluster;
    const char* plan;
  };
  for (const Case& k : {Case{"fairseq-moe-4.1b", "dgx-a100", "configs/plans/fairseq-moe-4.1b-8gpu.json"},
                        Case{"fairseq-moe-142b", "dgx-a100-8node", "configs/plans/fairseq-moe-142b-64gpu.json"}}) {
    const Inputs in = inputs(k.model, k.cluster);
    SearchSpace s;
    s.base = load_plan(k.plan);
    const std::vector<Plan> plans = enumerate_plans(in.model, in.cluster, s);
    EXPECT_NE(std::find(plans.begin(), plans.end(), s.base), plans.end()) << k.plan;
  }
}

// Every fitting plan on the event tier, the slowest way to find the best one.
double exhaustive_best(const Inputs& in, const SearchSpace& s, const RoutingSpec& routing, double limit, Plan* best_plan) {
  double best = INFINITY;
  std::map<int, ExpertLoad> loads;  // one routing sample per micro-batch size, as the search takes
  for (const Plan& p : enumerate_plans(in.model, in.cluster, s)) {
    if (peak_memory(in.model, p).bytes.total() > limit) continue;
    const ExpertLoad* load = nullptr;
    if (in.model.is_moe()) {
      if (!loads.contains(p.mbs))
        loads.emplace(p.mbs, route_tokens(in.model, routing, static_cast<std::int64_t>(p.mbs) * in.model.seq_len));
      load = &loads.at(p.mbs);
    }
    const SimResult r = simulate_event(in.model, p, in.cluster, in.profile, load);
    if (r.memory.bytes.total() > limit) continue;
    if (r.iteration_s < best) {
      best = r.iteration_s;
      *best_plan = p;
    }
  }
  return best;
}

TEST(Search, WinnerEqualsExhaustiveEventSimulation) {
  struct Case {
    const char* model;
    const char* cluster;
    std::int64_t gbs;
    int gpus;
    const char* routing;
  };
  for (const Case& k : {Case{"openlm-41m-e8", "dgx-a100", 64, 8, "uniform"},
                        Case{"openlm-160m-e32", "dgx-h100", 32, 8, "zipf:1.2"},
                        Case{"fairseq-moe-4.1b", "dgx1-v100", 16, 8, "uniform"},
                        Case{"openlm-410m-e1", "dgx-a100", 32, 4, "uniform"},
                        Case{"fairseq-moe-4.1b", "dgx-a100", 32, 8, "zipf:1.5"},
                        Case{"pai-gpt3-0.35b-moe64", "dgx-a100", 64, 8, "zipf:1"},
                        Case{"openlm-830m-e8", "dgx-h100", 64, 8, "uniform"},
                        Case{"evomoe-gptxl-16e", "dgx-a100", 32, 8, "uniform"},
                        Case{"fairseq-moe-15b", "dgx-a100-8node", 64, 16, "uniform"}}) {
    SCOPED_TRACE(std::string(k.model) + " on " + k.cluster);
    const Inputs in = inputs(k.model, k.cluster);
    const bool volta = in.cluster.gpu == GpuModel::v100_sxm2_32gb || in.cluster.gpu == GpuModel::v100_sxm2_16gb;
    SearchSpace s = space_with(k.gbs, volta ? DType::fp16 : DType::bf16);
    s.gpus = k.gpus;
    s.max_mbs = 8;
    const RoutingSpec routing = parse_routing(k.routing);
    s.placements = routing.kind != RoutingKind::uniform;
    SelfCommunicator self;
    const SearchResult r = search_plans(in.model, in.cluster, in.profile, routing, s, SearchOptions{}, self);
    ASSERT_FALSE(r.ranked.empty());
    Plan best;
    const double best_s = exhaustive_best(in, s, routing, r.memory_limit, &best);
    EXPECT_EQ(r.ranked.front().time(), best_s) << "search: " << plan_to_inline(r.ranked.front().plan)
                                                << "\nexhaustive: " << plan_to_inline(best);
  }
}

TEST(Search, ProposesOnlyPlansThatFitAndRanksThemInOrder) {
  const Inputs in = inputs("fairseq-moe-4.1b", "dgx1-v100");
  SearchSpace s = space_with(32, DType::fp16);
  SearchOptions o;
  o.headroom = 0.25;
  SelfCommunicator self;
  const SearchResult r = search_plans(in.model, in.cluster, in.profile, parse_routing("uniform"), s, o, self);
  ASSERT_GE(r.ranked.size(), 2u);
  EXPECT_LT(r.fitting, r.enumerated);  // the headroom rules some out
  EXPECT_DOUBLE_EQ(r.memory_limit, 0.75 * in.cluster.gpu_memory_bytes);
  for (std::size_t i = 0; i < r.ranked.size(); ++i) {
    const Candidate& c = r.ranked[i];
    EXPECT_TRUE(valid(c.plan, in.model, in.cluster));
    EXPECT_LE(c.memory, r.memory_limit);
    EXPECT_LE(c.event->memory.bytes.total(), r.memory_limit);
    if (i > 0) {
      EXPECT_LE(r.ranked[i - 1].time(), c.time());
    }
  }
  ASSERT_TRUE(r.best_without_pipeline && r.best_without_tensor);
  EXPECT_EQ(r.best_without_pipeline->plan.pp, 1);
  EXPECT_EQ(r.best_without_tensor->plan.tp, 1);
  EXPECT_GE(r.best_without_pipeline->time(), r.ranked.front().time());
}

TEST(Search, TiesAreThePlansWithinTheToleranceOfTheWinner) {
  const Inputs in = inputs("openlm-41m-e8", "dgx-a100");
  SearchSpace s = space_with(64);
  SelfCommunicator self;
  SearchOptions o;
  o.tie = 0;
  const SearchResult exact = search_plans(in.model, in.cluster, in.profile, parse_routing("uniform"), s, o, self);
  std::size_t equal = 0;
  while (equal + 1 < exact.ranked.size() && exact.ranked[equal + 1].time() == exact.ranked[0].time()) ++equal;
  EXPECT_EQ(exact.ties, equal);
  o.tie = 1.0;  // everything within 2x of the winner
  const SearchResult loose = search_plans(in.model, in.cluster, in.profile, parse_routing("uniform"), s, o, self);
  std::size_t within = 0;
  for (std::size_t i = 1; i < loose.ranked.size(); ++i) within += loose.ranked[i].time() <= 2 * loose.ranked[0].time();
  EXPECT_EQ(loose.ties, within);
}

TEST(Search, ScoresBaselinesAndPlacesThem) {
  const Inputs in = inputs("fairseq-moe-4.1b", "dgx-a100");
  SearchSpace s;
  s.base = load_plan("configs/plans/fairseq-moe-4.1b-8gpu.json");
  SearchOptions o;
  o.baselines = {s.base, parse_inline_plan("dp=4,ep=4,mbs=1,gbs=32,precision=fp16")};
  o.baseline_names = {"seed", "half"};
  SelfCommunicator self;
  const SearchResult r = search_plans(in.model, in.cluster, in.profile, parse_routing("uniform"), s, o, self);
  ASSERT_EQ(r.baselines.size(), 2u);
  const Candidate& seed = r.baselines[0].candidate;
  EXPECT_NE(seed.index, kOutsideSpace);
  EXPECT_GT(r.baselines[0].screen_rank, 0u);
  const ExpertLoad load = route_tokens(in.model, parse_routing("uniform"), s.base.mbs * in.model.seq_len);
  EXPECT_EQ(seed.time(), simulate_event(in.model, s.base, in.cluster, in.profile, &load).iteration_s);
  EXPECT_GE(seed.time(), r.ranked.front().time());
  EXPECT_EQ(r.baselines[1].candidate.index, kOutsideSpace);  // 4 of the 8 GPUs
  EXPECT_EQ(r.baselines[1].screen_rank, 0u);
}

TEST(Search, NeedsAGlobalBatch) {
  const Inputs in = inputs("openlm-41m-e8", "dgx-a100");
  SelfCommunicator self;
  try {
    search_plans(in.model, in.cluster, in.profile, parse_routing("uniform"), SearchSpace{}, SearchOptions{}, self);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--gbs: expected a global batch", 0), 0u) << e.what();
  }
}

SimResult result_with(double iteration, std::map<std::string, double> compute, std::map<std::string, double> comm) {
  SimResult r;
  r.iteration_s = iteration;
  r.breakdown.compute = std::move(compute);
  r.breakdown.exposed_comm = std::move(comm);
  return r;
}

TEST(Explain, NamesTheLargestSavingTheLargestCostAndTheFields) {
  const Plan a = parse_inline_plan("dp=8,ep=8,gbs=32"), b = parse_inline_plan("dp=8,ep=2,gbs=32,zero=1");
  const SimResult ra = result_with(1.0, {{"moe_experts", 0.6}}, {{"ep_all_to_all", 0.3}, {"dp_all_reduce", 0.1}});
  const SimResult rb = result_with(1.25, {{"moe_experts", 0.6}}, {{"ep_all_to_all", 0.6}, {"dp_all_reduce", 0.05}});
  EXPECT_EQ(why_faster(a, ra, b, rb, "the runner-up", 0.01),
            "is 25.0% faster than the runner-up (1 s vs 1.25 s per iteration): its exposed ep_all_to_all takes 300 ms "
            "less while its exposed dp_all_reduce takes 50 ms more, with ep 8 vs 2, zero 0 vs 1.");
  EXPECT_EQ(why_faster(a, ra, a, result_with(1.005, {{"moe_experts", 0.605}}, {}), "the runner-up", 0.01),
            "ties with the runner-up within 1% (1 s vs 1 s per iteration): its moe_experts compute takes 5 ms less "
            "while its exposed ep_all_to_all takes 300 ms more, with the same plan fields.");
  EXPECT_EQ(plan_difference(a, a), "");
  // Fields a plan leaves at their defaults compare as the values they stand for.
  EXPECT_EQ(plan_difference(parse_inline_plan("dp=4,tp=2,ep=8,etp=1,sp=true"), parse_inline_plan("dp=4,tp=2,ep=4")),
            "ep 8 vs 4, etp 1 vs 2, sp true vs false");
  EXPECT_EQ(plan_difference(parse_inline_plan("dp=4,tp=2,ep=4,gbs=8"), parse_inline_plan("dp=2,tp=2,cp=2,ep=4,gbs=8,attention=flash")),
            "dp 4 vs 2, attention unfused vs flash, cp 1 vs 2");
  const auto rows = compare_results(ra, rb);
  ASSERT_EQ(rows.size(), 8u);  // 1 compute, 2 comm, bubble, optimizer, memory, tokens/s, MFU
  EXPECT_EQ(rows[0].name, "compute: moe_experts");
  EXPECT_EQ(rows[1].name, "exposed comm: dp_all_reduce");
  EXPECT_EQ(rows[1].b, 0.05);
}

TEST(SearchReport, ShortPlanNamesOnlyTheSearchedFields) {
  EXPECT_EQ(short_plan(parse_inline_plan("dp=8,ep=8,gbs=32,zero=3,recompute=full,precision=fp16")),
            "dp=8,tp=1,pp=1,ep=8,mbs=1,zero=3,recompute=full");
  EXPECT_EQ(short_plan(parse_inline_plan("dp=2,pp=4,gbs=8,schedule=interleaved,vpp=2,placement=round_robin")),
            "dp=2,tp=1,pp=4,ep=1,mbs=1,zero=0,recompute=none,schedule=interleaved,vpp=2,placement=round_robin");
}

}  // namespace
}  // namespace moesim
