// Context parallelism (cp) and expert tensor parallelism (etp, with MoE parallel folding)
// in closed form: ring attention's exchange volume, what cp divides (activations, FLOPs),
// how etp splits expert weights and refolds the groups, and the plans they reject.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "src/accounting/memory.hpp"
#include "src/accounting/params.hpp"
#include "src/accounting/ring_attention.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/core/error.hpp"
#include "src/cost/compute_model.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/stage_cost.hpp"

namespace moesim {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

const ModelSpec& qwen3() {  // GQA: 32 query heads, 4 kv heads of 128; seq 4096; 128 experts of 768
  static const ModelSpec m = load_model("configs/models/qwen3-30b-a3b.json");
  return m;
}

TEST(RingAttention, ExchangeVolumeIsKeysAndValuesOfOneChunkPerHop) {
  // GQA: a rank's 4096/cp tokens of k and v (2 x 4 heads x 128) in bf16, cp - 1 hops; the
  // backward sends keys and values again with their gradients.
  const RingExchange r = ring_attention_exchange(qwen3(), parse_inline_plan("dp=2,cp=4,precision=bf16,attention=flash"));
  EXPECT_EQ(r.steps, 3);
  EXPECT_EQ(r.step_bytes, 2.0 * 1024 * (2 * 4 * 128));  // 2,097,152
  EXPECT_EQ(r.forward_bytes, 3 * 2097152.0);
  EXPECT_EQ(r.backward_bytes, 6 * 2097152.0);
  // Heads split over tp; mbs sequences.
  const RingExchange t = ring_attention_exchange(qwen3(), parse_inline_plan("tp=2,cp=2,mbs=2,precision=bf16,attention=flash"));
  EXPECT_EQ(t.step_bytes, 2.0 * (2 * 2048) * (2 * 4 * 128) / 2);
  EXPECT_EQ(t.forward_bytes, t.step_bytes);
  // MLA (DeepSeek-V3): the up-projected per-head keys (nope 128 + rope 64) and values (128).
  const ModelSpec v3 = load_model("configs/models/deepseek-v3.json");
  EXPECT_EQ(kv_width(v3), 128.0 * (128 + 64 + 128));
  const RingExchange d = ring_attention_exchange(v3, parse_inline_plan("tp=8,cp=2,precision=bf16,attention=flash"));
  EXPECT_EQ(d.step_bytes, 2.0 * 2048 * 40960 / 8);  // 20,971,520
  // No ring without cp.
  EXPECT_EQ(ring_attention_exchange(qwen3(), parse_inline_plan("dp=2,precision=bf16")).forward_bytes, 0.0);
}

TEST(ContextParallel, ActivationsPerRankAreOneCpthOfTheSequences) {
  // Every saved tensor is per token, and a rank holds 1/cp of each sequence (dropless MoE
  // routes k choices a token, so its buffers divide too).
  const ModelSpec& m = qwen3();
  for (const char* base : {"precision=bf16,attention=flash", "tp=2,sp=true,precision=bf16,attention=flash"}) {
    const std::string p1 = std::string("dp=4,") + base;
    for (int cp : {2, 4}) {
      const std::string pc = "dp=" + std::to_string(4 / cp) + ",cp=" + std::to_string(cp) + "," + base;
      for (int layer : {0, 1}) {
        const double whole = layer_activations(m, parse_inline_plan(p1), layer).total();
        EXPECT_DOUBLE_EQ(layer_activations(m, parse_inline_plan(pc), layer).total(), whole / cp) << pc;
      }
      // The head's logits too, so the whole stage's activations divide.
      EXPECT_DOUBLE_EQ(peak_memory(m, parse_inline_plan(pc)).bytes.activations,
                       peak_memory(m, parse_inline_plan(p1)).bytes.activations / cp)
          << pc;
    }
  }
}

TEST(ContextParallel, DenseStatesShardOverDataAndContextParallelRanks) {
  // Dense weights are replicated over dp x cp: ZeRO 1 divides their master copy and Adam's
  // moments by dp*cp, as Megatron's distributed optimizer does over its dp-cp group.
  const ModelSpec& m = qwen3();
  const Plan p = parse_inline_plan("dp=2,cp=4,ep=8,precision=bf16,attention=flash,dist_opt=true");
  EXPECT_EQ(p.world(), 8);
  EXPECT_EQ(p.dense_replicas(), 8);
  EXPECT_EQ(p.edp(), 1);
  const StageParams s = params_per_stage(m, p)[0];
  const MemoryBreakdown b = memory_per_stage(m, p)[0].bytes;
  const double ne = static_cast<double>(s.non_expert), ex = static_cast<double>(s.expert);
  EXPECT_DOUBLE_EQ(b.master + b.optimizer, 12 * (ne / 8 + ex / 1));
  EXPECT_DOUBLE_EQ(b.weights, 2 * (ne + ex));
}

TEST(ContextParallel, EachRankComputesOneCpthOfTheLayersFlops) {
  // Linear layers run on the rank's tokens; attention's scores pair them with the whole
  // sequence's keys (causal, load-balanced chunks): 1/cp of each either way.
  const ModelSpec& m = qwen3();
  const Profile prof = load_profile("profiles/h100-sxm5-80gb.json");
  for (int layer : {0, 1}) {
    auto flops = [&](const std::string& plan) {
      const Plan p = parse_inline_plan(plan);
      const double T = attention_tokens(p, m);
      double f = 0;
      for (const OpCost& op : layer_forward_ops(prof, m, p, layer, T, T * m.moe.top_k)) f += op.flops;
      return f;
    };
    const double whole = flops("dp=4,precision=bf16,attention=flash");
    EXPECT_DOUBLE_EQ(flops("dp=2,cp=2,precision=bf16,attention=flash"), whole / 2);
    EXPECT_DOUBLE_EQ(flops("dp=1,cp=4,precision=bf16,attention=flash"), whole / 4);
  }
}

TEST(ContextParallel, RingExchangeIsExposedOnlyBeyondTheAttentionItHidesBehind) {
  // Per layer and micro-batch, each of the cp - 1 hops hides behind one block (1/cp) of
  // the attention core, forward and (twice the bytes, twice the compute) backward.
  const ModelSpec& m = qwen3();
  const Profile prof = load_profile("profiles/h100-sxm5-80gb.json");
  const ClusterSpec c = load_cluster("configs/clusters/dgx-h100-8node.json");
  const Plan p = parse_inline_plan("dp=8,cp=8,ep=8,precision=bf16,attention=flash");
  const GroupLayout g = group_layout(p, c);
  EXPECT_EQ(g.cp.size, 8);
  EXPECT_EQ(g.cp.nodes, 1);
  const StageParams s = params_per_stage(m, p)[0];
  const StageTime st = stage_time(m, p, c, prof, g, s, nullptr);
  double core = 0;
  for (const OpCost& op : layer_forward_ops(prof, m, p, 0, attention_tokens(p, m), 0))
    if (op.name == "attention") core += op.seconds;
  const RingExchange r = ring_attention_exchange(m, p);
  const GroupPlacement pair{2, 1};
  const double hop = collective_cost(prof, c, Collective::send_recv, pair, r.step_bytes).seconds;
  const double hop2 = collective_cost(prof, c, Collective::send_recv, pair, 2 * r.step_bytes).seconds;
  const double per_layer = 7 * (std::max(0.0, hop - core / 8) + std::max(0.0, hop2 - 2 * core / 8));
  EXPECT_GT(per_layer, 0.0);  // 512-token chunks: NVLink hops outlast their attention blocks
  EXPECT_NEAR(st.comm.at("cp_ring_exchange"), m.layers * per_layer, 1e-12 * m.layers * per_layer);
  // Without cp there is no ring.
  const Plan p1 = parse_inline_plan("dp=64,ep=8,precision=bf16,attention=flash");
  EXPECT_EQ(stage_time(m, p1, c, prof, group_layout(p1, c), params_per_stage(m, p1)[0], nullptr).comm.count("cp_ring_exchange"), 0u);
}

TEST(ExpertTensorParallel, ExpertWeightsSplitEtpWaysAndTheRestTpWays) {
  // Mixtral-8x7B: 32 layers, 8 experts of 3 x 4096 x 14336 (SwiGLU, no bias).
  const ModelSpec m = load_model("configs/models/mixtral-8x7b-v0.1.json");
  const std::int64_t expert = 3LL * 4096 * 14336;  // 176,160,768
  auto stage = [&](const std::string& plan) { return params_per_stage(m, parse_inline_plan(plan))[0]; };
  // tp 4 with experts unsplit (etp 1) over ep 8: one whole expert a rank a layer.
  const StageParams folded = stage("dp=2,tp=4,ep=8,etp=1,precision=bf16");
  EXPECT_EQ(folded.by_kind.routed_experts, 32 * expert);
  // etp = tp, the default: each of 8/ep experts split 4 ways.
  EXPECT_EQ(stage("dp=2,tp=4,ep=2,precision=bf16").by_kind.routed_experts, 32 * 4 * expert / 4);
  EXPECT_EQ(stage("dp=2,tp=4,ep=2,etp=4,precision=bf16").by_kind.routed_experts, 32 * 4 * expert / 4);
  // Attention keeps tp 4 either way.
  EXPECT_EQ(folded.by_kind.attention, stage("dp=2,tp=4,ep=2,precision=bf16").by_kind.attention);
  // Memory: 8 GPUs as tp 4 x dp 2 for attention, etp 1 x ep 8 x edp 1 for experts; ZeRO 1
  // shards the experts' states over edp = 1 (not at all) and the dense ones over dp = 2.
  const Plan p = parse_inline_plan("dp=2,tp=4,ep=8,etp=1,precision=bf16,dist_opt=true");
  EXPECT_EQ(p.edp(), 1);
  const MemoryBreakdown b = memory_per_stage(m, p)[0].bytes;
  const double ne = static_cast<double>(folded.non_expert), ex = static_cast<double>(folded.expert);
  EXPECT_DOUBLE_EQ(b.weights, 2 * (ne + ex));
  EXPECT_DOUBLE_EQ(b.master + b.optimizer, 12 * (ne / 2 + ex / 1));
  // Folded the other way: 16 GPUs as tp 2 x dp 8, experts etp 2 x ep 4 x edp 2.
  const Plan q = parse_inline_plan("dp=8,tp=2,ep=4,etp=2,precision=bf16,dist_opt=true");
  EXPECT_EQ(q.edp(), 2);
  const StageParams qs = params_per_stage(m, q)[0];
  EXPECT_EQ(qs.by_kind.routed_experts, 32 * 2 * expert / 2);
  const MemoryBreakdown qb = memory_per_stage(m, q)[0].bytes;
  EXPECT_DOUBLE_EQ(qb.master + qb.optimizer,
                   12 * (static_cast<double>(qs.non_expert) / 8 + static_cast<double>(qs.expert) / 2));
}

TEST(ExpertTensorParallel, TheMoeLayersRefoldTheStagesRanks) {
  // Megatron-Core's order: attention tp-cp-dp, experts etp-ep-edp over the same ranks.
  // DGX H100 nodes of 8: tp 4 with experts unsplit puts an ep group of 8 on one node; with
  // etp = tp the ep group's ranks are 4 apart and span 4 nodes.
  const ClusterSpec c = load_cluster("configs/clusters/dgx-h100-8node.json");
  const GroupLayout folded = group_layout(parse_inline_plan("dp=16,tp=4,ep=8,etp=1"), c);
  EXPECT_EQ(folded.ep.size, 8);
  EXPECT_EQ(folded.ep.nodes, 1);
  EXPECT_EQ(folded.edp.size, 8);  // 64 / (1 x 8)
  EXPECT_EQ(folded.edp.nodes, 8);
  const GroupLayout plain = group_layout(parse_inline_plan("dp=16,tp=4,ep=8"), c);
  EXPECT_EQ(plain.ep.nodes, 4);
  EXPECT_EQ(plain.edp.size, 2);
  // cp sits between tp and dp: the dense replicas are dp x cp, tp apart.
  const GroupLayout cp = group_layout(parse_inline_plan("dp=8,tp=2,cp=4,attention=flash"), c);
  EXPECT_EQ(cp.cp.nodes, 1);
  EXPECT_EQ(cp.dp.size, 32);
  EXPECT_EQ(cp.dp.nodes, 8);
  // The routed tokens of a rank: 1/cp of its sequences, gathered over tp / etp attention ranks.
  const ModelSpec& m = qwen3();
  EXPECT_EQ(routed_tokens(parse_inline_plan("dp=16,tp=4,ep=8,etp=1"), m), 4096 / 4);
  EXPECT_EQ(routed_tokens(parse_inline_plan("dp=8,tp=2,cp=4,attention=flash"), m), 4096 / 4);
  EXPECT_EQ(routed_tokens(parse_inline_plan("dp=8,ep=8,mbs=2"), m), 2 * 4096);
}

TEST(ExpertTensorParallel, TheEtpRanksGatherAndScatterTheDispatchedTokens) {
  // Mixtral-8x7B (dropless top-2, no shared experts), 4096 tokens a micro-batch, bf16, on
  // one DGX H100 node. Per MoE layer and micro-batch: the attention block's tp all-reduce
  // forward and backward; the routed experts' all-gather of the dispatched tokens and
  // reduce-scatter of their outputs over the etp ranks, forward and backward.
  const ModelSpec m = load_model("configs/models/mixtral-8x7b-v0.1.json");
  const Profile prof = load_profile("profiles/h100-sxm5-80gb.json");
  const ClusterSpec c = load_cluster("configs/clusters/dgx-h100-8node.json");
  auto comm = [&](const std::string& plan) {
    const Plan p = parse_inline_plan(plan);
    return stage_time(m, p, c, prof, group_layout(p, c), params_per_stage(m, p)[0], nullptr).comm;
  };
  auto cost = [&](Collective op, int ranks, double bytes) {
    return collective_cost(prof, c, op, GroupPlacement{ranks, 1}, bytes).seconds;
  };
  const double h = 4096, layers = 32, tokens = 4096;
  const double slots = 2 * tokens;  // k x tokens: every rank of an etp group gathers them all
  const auto split = comm("dp=2,tp=4,ep=2,sp=true,precision=bf16");  // etp = tp = 4
  EXPECT_NEAR(split.at("tp_all_reduce"), layers * 2 * cost(Collective::all_reduce, 4, 2 * tokens * h), 1e-15);
  EXPECT_NEAR(split.at("etp_all_gather"), layers * 2 * cost(Collective::all_gather, 4, 2 * slots * h), 1e-15);
  EXPECT_NEAR(split.at("etp_reduce_scatter"), layers * 2 * cost(Collective::reduce_scatter, 4, 2 * slots * h), 1e-15);
  // Folded to etp 1, a rank's experts are whole: no expert tensor collectives, and its
  // 1,024 tokens go straight to the dispatch.
  const auto folded = comm("dp=2,tp=4,ep=8,etp=1,sp=true,precision=bf16");
  EXPECT_EQ(folded.count("etp_all_gather"), 0u);
  EXPECT_EQ(folded.count("etp_reduce_scatter"), 0u);
  EXPECT_NEAR(folded.at("tp_all_reduce"), split.at("tp_all_reduce"), 1e-15);
  // Without expert parallelism the tokens are gathered before routing (the all-gather
  // dispatcher): one copy of each, not k.
  const auto gathered = comm("dp=2,tp=4,sp=true,precision=bf16");
  EXPECT_NEAR(gathered.at("etp_all_gather"), layers * 2 * cost(Collective::all_gather, 4, 2 * tokens * h), 1e-15);
  // A dense model keeps both blocks' all-reduces; shared experts are split tp ways too.
  const ModelSpec dense = load_model("configs/models/openlm-410m-e1.json");
  const Plan d = parse_inline_plan("dp=2,tp=4,precision=bf16");
  const double dense_tokens = static_cast<double>(dense.seq_len), dh = static_cast<double>(dense.d_model);
  EXPECT_NEAR(stage_time(dense, d, c, prof, group_layout(d, c), params_per_stage(dense, d)[0], nullptr).comm.at("tp_all_reduce"),
              dense.layers * 4 * cost(Collective::all_reduce, 4, 2 * dense_tokens * dh), 1e-12);
  const ModelSpec v3 = load_model("configs/models/deepseek-v3.json");  // one shared expert, one MTP layer
  const Plan e = parse_inline_plan("dp=2,tp=4,ep=2,sp=true,precision=bf16");
  const double v3_tokens = static_cast<double>(v3.seq_len), v3h = static_cast<double>(v3.d_model);
  EXPECT_NEAR(stage_time(v3, e, c, prof, group_layout(e, c), params_per_stage(v3, e)[0], nullptr).comm.at("tp_all_reduce"),
              (v3.layers + v3.mtp_layers) * 4 * cost(Collective::all_reduce, 4, 2 * v3_tokens * v3h), 1e-12);
}

TEST(ParallelFolding, PlansThatDoNotDivideSayWhichField) {
  const ModelSpec& m = qwen3();
  struct Case {
    const char *plan, *message;
  };
  const Case inline_cases[] = {
      {"dp=4,tp=2,ep=4,etp=3", "field 'etp': expected etp*ep (12) to divide the tp*cp*dp GPUs of a pipeline stage (8)"},
      {"dp=2,cp=2,ep=8,attention=flash", "field 'ep': expected a divisor of dp*cp (4)"},
      {"dp=2,cp=2", "field 'cp': expected 1 with attention unfused"},
      {"cp=0", "field 'cp': expected an integer in [1, 1048576], got 0"},
      {"etp=0", "field 'etp': expected an integer in [1, 1048576], got 0"},
  };
  for (const Case& c : inline_cases) {
    const std::string msg = error_of([&] { parse_inline_plan(c.plan); });
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.plan << " -> " << msg;
  }
  const Case model_cases[] = {
      {"cp=3,attention=flash", "field 'cp': expected 2*cp to divide the model's seq_len (4096), got cp 3"},
      {"cp=4096,attention=flash", "field 'cp': expected 2*cp to divide the model's seq_len (4096), got cp 4096"},
      {"dp=512,etp=512", "field 'etp': expected a divisor of the model's expert_ffn_dim (768), got 512"},
  };
  for (const Case& c : model_cases) {
    const std::string msg = error_of([&] { check_plan(parse_inline_plan(c.plan), m, "p"); });
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.plan << " -> " << msg;
  }
  // Folding that divides: experts over all of a stage's tp x cp x dp ranks.
  EXPECT_EQ(error_of([&] { check_plan(parse_inline_plan("dp=2,tp=2,cp=2,ep=8,etp=1,attention=flash"), m, "p"); }), "");
  // Dense models have no experts to split.
  const ModelSpec dense = load_model("configs/models/openlm-160m-e1.json");
  ASSERT_FALSE(dense.is_moe());
  EXPECT_NE(error_of([&] { check_plan(parse_inline_plan("tp=2,etp=2"), dense, "p"); }).find("field 'etp'"),
            std::string::npos);
  // The world counts cp.
  const ClusterSpec one = load_cluster("configs/clusters/dgx-h100.json");
  EXPECT_NE(error_of([&] { check_plan(parse_inline_plan("dp=8,cp=2,attention=flash"), one, "p"); })
                .find("expected dp*tp*pp*cp (16) at most the cluster's 8 GPUs"),
            std::string::npos);
}

TEST(ParallelFolding, CpAndEtpRoundTripAndAreWrittenOnlyWhenSet) {
  const Plan p = parse_inline_plan("dp=2,tp=2,cp=2,ep=8,etp=1,gbs=16,attention=flash");
  EXPECT_EQ(p.cp, 2);
  EXPECT_EQ(p.etp, 1);
  EXPECT_EQ(p.expert_tp(), 1);
  EXPECT_EQ(parse_inline_plan(plan_to_inline(p)), p);
  EXPECT_EQ(plan_from_json(plan_to_json(p), "round trip"), p);
  const std::string plain = plan_to_inline(parse_inline_plan("dp=2,tp=2"));
  EXPECT_EQ(plain.find("cp="), std::string::npos);
  EXPECT_EQ(plain.find("etp="), std::string::npos);
  EXPECT_EQ(parse_inline_plan("dp=2,tp=2").expert_tp(), 2);
}

}  // namespace
}  // namespace moesim
