// The analytic tier against closed forms: NCCL-style ring costs, pure data parallelism,
// pipeline bubble fractions, all-to-all bytes under uniform routing.
#include <gtest/gtest.h>

#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/cost/comm_model.hpp"
#include "src/cost/compute_model.hpp"
#include "src/model/model_json.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/placement.hpp"
#include "src/simulate/stage_cost.hpp"

namespace moesim {
namespace {

struct Fixture {
  ClusterSpec cluster = load_cluster("configs/clusters/dgx-a100.json");
  Profile profile = load_profile("profiles/a100-sxm4-40gb.json");
};

TEST(CommModel, RingAllReduceClosedForm) {
  Fixture f;
  const double n = 1 << 30, p = 8;
  const double B = 300e9 * f.profile.comm.nvlink_efficiency.value;
  const double alpha = f.profile.comm.base_latency.value + 2 * (p - 1) * f.profile.comm.nvlink_step_latency.value;
  const CollectiveCost c = collective_cost(f.profile, f.cluster, Collective::all_reduce, {8, 1}, n);
  EXPECT_DOUBLE_EQ(c.seconds, alpha + 2 * (p - 1) / p * n / B);
  EXPECT_DOUBLE_EQ(c.bus_bytes, 2 * (p - 1) / p * n);
  // Across nodes the NIC share per GPU is the bottleneck: 8 x 200 Gb/s / 8 GPUs.
  const ClusterSpec multi = load_cluster("configs/clusters/dgx-a100-8node.json");
  const CollectiveCost x = collective_cost(f.profile, multi, Collective::all_reduce, {64, 8}, n);
  const double nic = 25e9 * f.profile.comm.net_efficiency.value;
  const double steps = 2 * 63.0, inter = steps * 8 / 64;
  EXPECT_DOUBLE_EQ(x.seconds, f.profile.comm.base_latency.value + (steps - inter) * f.profile.comm.nvlink_step_latency.value +
                                  inter * f.profile.comm.net_step_latency.value + 2 * 63.0 / 64 * n / nic);
}

TEST(CommModel, AllToAllBytesUnderUniformRouting) {
  // Each rank sends tokens * k * d * bytes * (ep - 1) / ep to the others.
  Fixture f;
  const double tokens = 8192, k = 2, d = 2048, bytes = 2, ep = 8;
  const CollectiveCost c = collective_cost(f.profile, f.cluster, Collective::all_to_all, {8, 1}, tokens * k * d * bytes);
  EXPECT_DOUBLE_EQ(c.bus_bytes, tokens * k * d * bytes * (ep - 1) / ep);
}

TEST(Analytic, PureDataParallelIsComputePlusExposedAllReduce) {
  Fixture f;
  const ModelSpec m = load_model("configs/models/openlm-160m-e1.json");
  const Plan p = parse_inline_plan("dp=8,mbs=4,precision=bf16");
  const SimResult r = simulate_analytic(m, p, f.cluster, f.profile);
  // Compute: every op forward once and backward twice.
  double fwd = 0;
  const double T = 4.0 * 2048;
  for (const auto& op : embedding_forward_ops(f.profile, m, p, T)) fwd += op.seconds;
  for (int l = 0; l < m.layers; ++l)
    for (const auto& op : layer_forward_ops(f.profile, m, p, l, T, 0)) fwd += op.seconds;
  for (const auto& op : head_forward_ops(f.profile, m, p, T)) fwd += op.seconds;
  const double params = static_cast<double>(count_params(m).total);
  const double ar = collective_cost(f.profile, f.cluster, Collective::all_reduce, {8, 1}, 2 * params).seconds;
  const double opt = optimizer_op(f.profile, p, params).seconds;
  const double expected = 3 * fwd + std::max(0.0, ar - 2 * fwd) + opt;
  std::printf("pure DP: compute %.6f s, all-reduce %.6f s (exposed %.6f), optimizer %.6f s; iteration %.6f s\n", 3 * fwd,
              ar, std::max(0.0, ar - 2 * fwd), opt, r.iteration_s);
  EXPECT_NEAR(r.iteration_s, expected, 1e-12 * expected);
  // A slow fabric: the all-reduce outlasts backward and the rest is exposed.
  ClusterSpec slow = f.cluster;
  slow.nvlink_bandwidth = 1e9;
  const double ar_slow = collective_cost(f.profile, slow, Collective::all_reduce, {8, 1}, 2 * params).seconds;
  ASSERT_GT(ar_slow, 2 * fwd);
  const SimResult rs = simulate_analytic(m, p, slow, f.profile);
  EXPECT_NEAR(rs.iteration_s, 3 * fwd + (ar_slow - 2 * fwd) + opt, 1e-12 * rs.iteration_s);
  EXPECT_NEAR(rs.breakdown.exposed_comm.at("dp_all_reduce"), ar_slow - 2 * fwd, 1e-12);
}

TEST(Analytic, PipelineBubbleFractions) {
  Fixture f;
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  for (const char* schedule : {"gpipe", "1f1b"}) {
    for (int mb : {4, 8, 32}) {
      const Plan p = parse_inline_plan("pp=4,precision=fp16,schedule=" + std::string(schedule) + ",gbs=" + std::to_string(mb));
      const SimResult r = simulate_analytic(m, p, f.cluster, f.profile);
      double pipeline = r.breakdown.bubble;
      for (const auto& [k, v] : r.breakdown.compute) pipeline += v;
      for (const auto& [k, v] : r.breakdown.exposed_comm) pipeline += v;
      // Bubble fraction (p - 1) / (m + p - 1) of the pipelined part.
      EXPECT_NEAR(r.breakdown.bubble / pipeline, 3.0 / (mb + 3.0), 1e-12) << schedule << " m=" << mb;
    }
  }
  // Interleaving with v virtual stages: ((p - 1) / v) / (m + (p - 1) / v).
  for (int v : {2, 3}) {
    const Plan p = parse_inline_plan("pp=4,vpp=" + std::to_string(v) + ",schedule=interleaved,precision=fp16,gbs=8");
    if (m.layers % (4 * v) != 0) continue;
    const SimResult r = simulate_analytic(m, p, f.cluster, f.profile);
    double pipeline = r.breakdown.bubble;
    for (const auto& [k, x] : r.breakdown.compute) pipeline += x;
    for (const auto& [k, x] : r.breakdown.exposed_comm) pipeline += x;
    EXPECT_NEAR(r.breakdown.bubble / pipeline, (3.0 / v) / (8 + 3.0 / v), 1e-12) << "vpp=" << v;
  }
}

TEST(Analytic, GroupsFollowMegatronRankOrder) {
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100-8node.json");
  const GroupLayout l = group_layout(parse_inline_plan("tp=2,dp=16,ep=4,pp=2"), c);
  EXPECT_EQ(l.tp.nodes, 1);
  EXPECT_EQ(l.ep.nodes, 1);   // ep x tp = 8 ranks: one node
  EXPECT_EQ(l.edp.nodes, 4);  // replicas 8 ranks apart
  EXPECT_EQ(l.dp.nodes, 4);
  EXPECT_TRUE(l.pp_crosses_nodes);
}

TEST(Analytic, ThroughputFollowsIterationTime) {
  Fixture f;
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  const SimResult r = simulate_analytic(m, load_plan("configs/plans/fairseq-moe-4.1b-8gpu.json"), f.cluster, f.profile);
  EXPECT_DOUBLE_EQ(r.wps, 32 * 2048 / r.iteration_s);  // fairseq's wps: tokens per second over all GPUs
  EXPECT_DOUBLE_EQ(r.wps_per_gpu * 8, r.wps);
  EXPECT_GT(r.mfu, 0);
  EXPECT_LT(r.mfu, 1);
  EXPECT_TRUE(r.fits);
}

}  // namespace
}  // namespace moesim

namespace moesim {
namespace {

TEST(ComputeModel, Fp8LinearsRunAtTheFp8PeakAndTheRestAsBefore) {
  // H100: the linear layers' GEMMs on one-byte operands at 1979 TFLOP/s x the FP8 table's
  // efficiency; attention's batched GEMMs, the router and the norms as in bf16.
  const ModelSpec m = load_model("configs/models/openlm-160m-e8.json");
  const Profile h100 = load_profile("profiles/h100-sxm5-80gb.json");
  const Plan bf16 = parse_inline_plan("precision=bf16,mbs=1"), fp8 = parse_inline_plan("precision=bf16,mbs=1,fp8=hybrid");
  const double T = 2048;
  int moe_layer = 0;
  while (!m.is_moe_layer(moe_layer)) ++moe_layer;
  const auto a = layer_forward_ops(h100, m, bf16, moe_layer, T, T * m.moe.top_k);
  const auto b = layer_forward_ops(h100, m, fp8, moe_layer, T, T * m.moe.top_k);
  ASSERT_EQ(a.size(), b.size());
  const double peak = 1979e12, eff = h100.compute.fp8_gemm_efficiency.value;
  const double bw = h100.compute.memory_efficiency.value * h100.compute.memory_bandwidth.value;
  int linears = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name);
    ASSERT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].flops, b[i].flops);
    const bool linear = a[i].name == "qkv" || a[i].name == "attention_out" || a[i].name.ends_with("_fc1") ||
                        a[i].name.ends_with("_fc2");
    if (!linear) {
      EXPECT_EQ(a[i].seconds, b[i].seconds);
      continue;
    }
    ++linears;
    EXPECT_DOUBLE_EQ(b[i].bytes, a[i].bytes / 2);  // bf16 operands became one byte
    EXPECT_DOUBLE_EQ(b[i].seconds, std::max(b[i].flops / (eff * peak), b[i].bytes / bw) +
                                       b[i].kernels * h100.compute.kernel_overhead.value);
    EXPECT_LT(b[i].seconds, a[i].seconds);
  }
  EXPECT_EQ(linears, 4);  // qkv, attention_out, expert fc1, fc2
  // A profile without an FP8 peak cannot price it, and says which field is missing.
  const Profile a100 = load_profile("profiles/a100-sxm4-40gb.json");
  try {
    layer_forward_ops(a100, m, fp8, moe_layer, T, T);
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("compute.peak_flops.fp8"), std::string::npos) << e.what();
  }
}

TEST(CommModel, Fp8DispatchSendsTheForwardDispatchInOneByteWithTileScales) {
  // Of the four all-to-alls of an MoE layer a micro-batch (dispatch and combine, forward
  // and backward), fp8_dispatch shrinks the forward dispatch to 1 + 4/128 bytes an
  // element (DeepSeek-V3's 1 x 128 tiles with fp32 scales); the rest stay in bf16.
  const ModelSpec m = load_model("configs/models/mixtral-8x7b-v0.1.json");
  const Profile prof = load_profile("profiles/h100-sxm5-80gb.json");
  const ClusterSpec c = load_cluster("configs/clusters/dgx-h100-8node.json");
  const Plan bf16 = parse_inline_plan("dp=64,ep=8,precision=bf16,fp8=hybrid");
  const Plan fp8 = parse_inline_plan("dp=64,ep=8,precision=bf16,fp8=hybrid,fp8_dispatch=true");
  const GroupLayout g = group_layout(bf16, c);
  const StageParams s = params_per_stage(m, bf16)[0];
  const double a = stage_time(m, bf16, c, prof, g, s, nullptr).comm.at("ep_all_to_all");
  const double b = stage_time(m, fp8, c, prof, g, s, nullptr).comm.at("ep_all_to_all");
  const double elements = 2.0 * 4096 * 4096;  // k x tokens slots (dropless) x d
  auto cost = [&](double bytes) { return collective_cost(prof, c, Collective::all_to_all, g.ep, bytes).seconds; };
  EXPECT_DOUBLE_EQ(a, m.layers * 4 * cost(2 * elements));
  EXPECT_DOUBLE_EQ(b, m.layers * (3 * cost(2 * elements) + cost(1.03125 * elements)));
  EXPECT_LT(b, a);
  // Without FP8 GEMMs there is no FP8 recipe to dispatch with.
  try {
    parse_inline_plan("dp=8,ep=8,precision=bf16,fp8_dispatch=true");
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'fp8_dispatch': expected fp8 e4m3 or hybrid"), std::string::npos) << e.what();
  }
  EXPECT_NE(plan_to_inline(fp8).find(",fp8_dispatch=true"), std::string::npos);
  EXPECT_EQ(plan_to_inline(bf16).find("fp8_dispatch"), std::string::npos);
}

}  // namespace
}  // namespace moesim
