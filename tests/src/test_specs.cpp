// Loading and validating specs: every error names the file and the field; round trips;
// inline plans; cross-validation of plans against models and clusters; units; topology.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "src/accounting/params.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/cluster/topology.hpp"
#include "src/core/json_reader.hpp"
#include "src/core/units.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"

namespace moesim {
namespace {

const char* kModel = "configs/models/fairseq-moe-4.1b.json";

// The message of the InputError that `f` throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

nlohmann::json model_doc() { return read_json_file(kModel); }

struct BadModelCase {
  const char* name;
  void (*mutate)(nlohmann::json&);
  const char* field;
  const char* expected;
};

TEST(ModelSpec, EveryBadFieldIsNamed) {
  const BadModelCase cases[] = {
      {"unknown key", [](nlohmann::json& j) { j["boost_mode"] = 1; }, "field 'boost_mode'", "unknown field"},
      {"unknown nested key", [](nlohmann::json& j) { j["moe"]["turbo"] = true; }, "field 'moe.turbo'", "unknown field"},
      {"missing", [](nlohmann::json& j) { j.erase("d_model"); }, "field 'd_model'", "required field is missing"},
      {"wrong type", [](nlohmann::json& j) { j["layers"] = "24"; }, "field 'layers'", "expected an integer"},
      {"fraction", [](nlohmann::json& j) { j["layers"] = 2.5; }, "field 'layers'", "expected an integer"},
      {"zero", [](nlohmann::json& j) { j["heads"] = 0; }, "field 'heads'", "expected an integer in [1, 1024]"},
      {"negative", [](nlohmann::json& j) { j["vocab"] = -5; }, "field 'vocab'", "got -5"},
      {"huge", [](nlohmann::json& j) { j["d_model"] = 1e300; }, "field 'd_model'", "expected an integer"},
      {"bad enum", [](nlohmann::json& j) { j["norm"] = "batchnorm"; }, "field 'norm'", "expected one of layernorm"},
      {"heads not dividing", [](nlohmann::json& j) { j["heads"] = 30; }, "field 'heads'", "divisor of d_model"},
      {"top_k > experts", [](nlohmann::json& j) { j["moe"]["top_k"] = 9; }, "field 'moe.top_k'", "[1, 8]"},
      {"layer out of range", [](nlohmann::json& j) { j["moe"]["layers"] = {1, 99}; }, "field 'moe.layers'", "[0, 23]"},
      {"kv heads", [](nlohmann::json& j) { j["kv_heads"] = 5; }, "field 'kv_heads'", "divisor of heads"},
      {"capacity", [](nlohmann::json& j) { j["moe"]["capacity_factor"] = "big"; }, "field 'moe.capacity_factor'", "expected a number"},
  };
  for (const BadModelCase& c : cases) {
    SCOPED_TRACE(c.name);
    nlohmann::json doc = model_doc();
    c.mutate(doc);
    const std::string msg = error_of([&] { model_from_json(doc, "m.json"); });
    EXPECT_EQ(msg.rfind("m.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.field), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST(ModelSpec, FileErrorsNameTheFile) {
  EXPECT_EQ(error_of([] { load_model("configs/models/nope.json"); }),
            "configs/models/nope.json: cannot open the file for reading");
  EXPECT_NE(error_of([] { model_from_json(parse_json_text("{\"name\": ", "x.json"), "x.json"); })
                .find("x.json: not valid JSON (syntax error at byte"),
            std::string::npos);
  EXPECT_NE(error_of([] { model_from_json(parse_json_text("[1, 2]", "x.json"), "x.json"); }).find("expected a JSON object"),
            std::string::npos);
}

TEST(ModelSpec, RoundTripKeepsEveryCount) {
  for (const char* name : {"fairseq-moe-4.1b", "fairseq-moe-15b", "pai-gpt3-0.35b-moe64", "openlm-87m-e8",
                           "openlm-41m-e1", "evomoe-gptxl-16e"}) {
    SCOPED_TRACE(name);
    const ModelSpec a = load_model(std::string("configs/models/") + name + ".json");
    const nlohmann::json written = nlohmann::json::parse(model_to_json(a).dump());
    const ModelSpec b = model_from_json(written, "roundtrip");
    EXPECT_EQ(model_to_json(a).dump(), model_to_json(b).dump());
    EXPECT_EQ(count_params(a).total, count_params(b).total);
    EXPECT_EQ(count_params(a).active, count_params(b).active);
  }
}

TEST(ModelSpec, MoeLayerSelection) {
  ModelSpec m = load_model(kModel);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(m.is_moe_layer(i), i % 2 == 1) << i;  // fairseq: (i+1) % 2 == 0
  m.moe.layers = {1, 3, {}};  // DeepSeek-style: dense first 3, then every layer
  EXPECT_FALSE(m.is_moe_layer(2));
  EXPECT_TRUE(m.is_moe_layer(3));
  EXPECT_TRUE(m.is_moe_layer(23));
  m.moe.layers.list = {0, 5};
  EXPECT_EQ(m.moe_layer_count(), 2);
}

TEST(Plan, InlineKeysAndDefaults) {
  const Plan p = parse_inline_plan("dp=2,tp=2,pp=2,ep=2,mbs=1,gbs=64,zero=1,recompute=selective,schedule=gpipe,precision=bf16");
  EXPECT_EQ(p.world(), 8);
  EXPECT_EQ(p.micro_batches(), 32);
  EXPECT_EQ(p.edp(), 1);
  EXPECT_TRUE(p.master_weights);  // bf16 keeps an fp32 master copy unless told otherwise
  EXPECT_EQ(p.recompute, Recompute::selective);
  // Written inline and parsed again: the same plan.
  EXPECT_EQ(plan_to_inline(parse_inline_plan(plan_to_inline(p))), plan_to_inline(p));
  const Plan file = load_plan("configs/plans/fairseq-moe-4.1b-8gpu.json");
  EXPECT_EQ(file.zero, 3);
  EXPECT_FALSE(file.master_weights);
}

struct BadPlanCase {
  const char* plan;
  const char* message;
};

TEST(Plan, BadInlinePlansSayWhy) {
  const BadPlanCase cases[] = {
      {"dp=2,dp=4", "field 'dp': given twice"},
      {"dp=two", "field 'dp': expected an integer, got 'two'"},
      {"dp=0", "field 'dp': expected an integer in [1, 1048576], got 0"},
      {"dp", "field 'dp': expected key=value"},
      {"dp=2,", "expected key=value after the last ','"},
      {"warp=9", "field 'warp': unknown field"},
      {"dp=4,ep=3", "field 'ep': expected a divisor of dp (4)"},
      {"dp=2,mbs=3,gbs=10", "field 'gbs': expected a multiple of dp*mbs (6), got 10"},
      {"pp=2,vpp=2", "field 'vpp': expected 1 unless schedule is interleaved"},
      {"pp=2,schedule=interleaved,vpp=2,gbs=3", "expected micro-batches (3) divisible by pp (2)"},
      {"zero=4", "field 'zero': expected an integer in [0, 3], got 4"},
      {"recompute=some", "field 'recompute': expected one of none, selective, full"},
      {"master_weights=true", "field 'master_weights': expected false with precision fp32"},
      {"sp=true", "field 'sp': expected tp > 1"},
      {"tp=2,sp=yes", "field 'sp'"},
      {"dist_opt=true,zero=2", "field 'dist_opt': expected zero 1 or no zero"},
      {"precision=bf16,grad_dtype=fp16", "field 'grad_dtype': expected fp32 or the precision (bf16)"},
      {"fp8=hybrid", "field 'fp8': expected precision bf16 or fp16"},
      {"precision=bf16,fp8=e5m2", "field 'fp8': expected one of none, e4m3, hybrid"},
  };
  for (const BadPlanCase& c : cases) {
    const std::string msg = error_of([&] { parse_inline_plan(c.plan); });
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.plan << " -> " << msg;
    EXPECT_EQ(msg.rfind("--plan '" + std::string(c.plan) + "': ", 0), 0u) << msg;
  }
}

TEST(Plan, SequenceParallelismRoundTripsAndIsWrittenOnlyWhenOn) {
  const Plan on = parse_inline_plan("tp=2,sp=true");
  EXPECT_TRUE(on.sp);
  const Plan back = parse_inline_plan(plan_to_inline(on));
  EXPECT_TRUE(back.sp);
  EXPECT_EQ(plan_to_inline(back), plan_to_inline(on));
  EXPECT_NE(plan_to_inline(on).find(",sp=true"), std::string::npos);
  EXPECT_EQ(plan_to_inline(parse_inline_plan("tp=2")).find("sp="), std::string::npos);
  EXPECT_FALSE(parse_inline_plan("tp=2,sp=false").sp);
  // fp32 gradients under bf16 are written; the precision's own are the default, not written.
  EXPECT_NE(plan_to_inline(parse_inline_plan("precision=bf16,grad_dtype=fp32")).find(",grad_dtype=fp32"), std::string::npos);
  EXPECT_EQ(parse_inline_plan("precision=bf16,grad_dtype=bf16"), parse_inline_plan("precision=bf16"));
  EXPECT_EQ(plan_to_inline(parse_inline_plan("precision=bf16,grad_dtype=bf16")).find("grad_dtype"), std::string::npos);
}

TEST(Plan, PlansThatDoNotDivideTheModelAreRejected) {
  const ModelSpec m = load_model(kModel);  // 24 layers, 32 heads, 8 experts, ffn 8192
  const BadPlanCase cases[] = {
      {"tp=3", "field 'tp': expected a divisor of the model's heads (32), got 3"},
      {"pp=5", "field 'pp': expected a divisor of the model's layers (pp*vpp) (24), got 5"},
      {"pp=4,vpp=4,schedule=interleaved,gbs=4", "field 'pp': expected a divisor of the model's layers (pp*vpp) (24), got 16"},
      {"dp=16,ep=16", "field 'ep': expected a divisor of the model's experts (8), got 16"},
  };
  for (const BadPlanCase& c : cases)
    EXPECT_NE(error_of([&] { check_plan(parse_inline_plan(c.plan), m, "p"); }).find(c.message), std::string::npos)
        << c.plan;
  EXPECT_EQ(error_of([&] { check_plan(parse_inline_plan("dp=8,ep=8,tp=2,pp=2"), m, "p"); }), "");
}

TEST(Plan, PlansThatDoNotFitTheClusterAreRejected) {
  const ClusterSpec a100 = load_cluster("configs/clusters/dgx-a100.json");
  EXPECT_NE(error_of([&] { check_plan(parse_inline_plan("dp=16"), a100, "p"); }).find("at most the cluster's 8 GPUs"),
            std::string::npos);
  const ClusterSpec v100 = load_cluster("configs/clusters/dgx1-v100.json");
  EXPECT_NE(error_of([&] { check_plan(parse_inline_plan("dp=8,precision=bf16"), v100, "p"); }).find("Volta has no bf16"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { check_plan(parse_inline_plan("dp=8,precision=fp16"), v100, "p"); }), "");
  // FP8 needs Hopper's tensor cores.
  const Plan fp8 = parse_inline_plan("dp=8,precision=bf16,fp8=hybrid");
  EXPECT_NE(error_of([&] { check_plan(fp8, a100, "p"); }).find("field 'fp8': expected a GPU with FP8 tensor cores (H100, H200); a100-sxm4-40gb has none"),
            std::string::npos) << error_of([&] { check_plan(fp8, a100, "p"); });
  EXPECT_EQ(error_of([&] { check_plan(fp8, load_cluster("configs/clusters/dgx-h100.json"), "p"); }), "");
  EXPECT_NE(plan_to_inline(fp8).find(",fp8=hybrid"), std::string::npos);
  EXPECT_EQ(plan_to_inline(parse_inline_plan("dp=8,precision=bf16")).find("fp8"), std::string::npos);
}

TEST(Units, ParseInBaseUnits) {
  EXPECT_EQ(parse_quantity("80GiB", Dimension::bytes), 80.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_quantity("40 GB", Dimension::bytes), 40e9);
  EXPECT_EQ(parse_quantity("300GBps", Dimension::bandwidth), 300e9);
  EXPECT_EQ(parse_quantity("200Gbps", Dimension::bandwidth), 25e9);
  EXPECT_EQ(parse_quantity("2.5us", Dimension::seconds), 2.5e-6);
  EXPECT_EQ(parse_quantity("989TFLOPS", Dimension::flops), 989e12);
  EXPECT_FALSE(parse_quantity("80", Dimension::bytes));
  EXPECT_FALSE(parse_quantity("80GBps", Dimension::bytes));
  EXPECT_FALSE(parse_quantity("-1GB", Dimension::bytes));
  EXPECT_FALSE(parse_quantity("1e400GB", Dimension::bytes));
}

TEST(Cluster, ShippedClustersLoad) {
  for (const char* name : {"dgx1-v100", "dgx-a100", "dgx-a100-8node", "dgx-h100"}) {
    SCOPED_TRACE(name);
    const ClusterSpec c = load_cluster(std::string("configs/clusters/") + name + ".json");
    const ClusterSpec again = cluster_from_json(nlohmann::json::parse(cluster_to_json(c).dump()), "rt");
    EXPECT_EQ(cluster_to_json(c).dump(), cluster_to_json(again).dump());
  }
  EXPECT_EQ(load_cluster("configs/clusters/dgx-a100-8node.json").total_gpus(), 64);
}

TEST(Cluster, BadCubeMeshTable) {
  nlohmann::json j = read_json_file("configs/clusters/dgx1-v100.json");
  j["nvlink_peers"].push_back({0, 9, 1});
  EXPECT_NE(error_of([&] { cluster_from_json(j, "c.json"); }).find("c.json: field 'nvlink_peers': expected a list of"),
            std::string::npos);
  j = read_json_file("configs/clusters/dgx1-v100.json");
  j["nvlink_peers"].push_back({3, 0, 1});
  EXPECT_NE(error_of([&] { cluster_from_json(j, "c.json"); }).find("each GPU pair once"), std::string::npos);
  j = read_json_file("configs/clusters/dgx-a100.json");
  j["nvlink_bandwidth"] = 300;
  EXPECT_NE(error_of([&] { cluster_from_json(j, "c.json"); }).find("field 'nvlink_bandwidth': expected a bandwidth"),
            std::string::npos);
}

// Bandwidth of the narrowest link on the route, and its hop count.
std::pair<double, std::size_t> narrowest(const Topology& t, int a, int b) {
  double bw = INFINITY;
  auto path = route(t, a, b);
  for (auto e : path) bw = std::min(bw, t.graph[e].bandwidth);
  return {bw, path.size()};
}

TEST(Topology, CubeMeshRoutesUseNvlinkWherePresent) {
  const Topology t = build_topology(load_cluster("configs/clusters/dgx1-v100.json"));
  EXPECT_EQ(narrowest(t, 0, 3), std::make_pair(50e9, std::size_t{1}));  // NV2: two links
  EXPECT_EQ(narrowest(t, 0, 1), std::make_pair(25e9, std::size_t{1}));  // NV1
  EXPECT_EQ(narrowest(t, 0, 5), std::make_pair(15.75e9, std::size_t{2}));  // no NVLink: over PCIe
  for (int a = 0; a < 8; ++a) {
    for (int b = 0; b < 8; ++b) {
      if (a == b) continue;
      EXPECT_EQ(boost::target(route(t, a, b).back(), t.graph), t.gpu_vertex[b]);
    }
  }
}

TEST(Topology, NvswitchAndNetworkRoutes) {
  const Topology t = build_topology(load_cluster("configs/clusters/dgx-a100-8node.json"));
  EXPECT_EQ(narrowest(t, 0, 7), std::make_pair(300e9, std::size_t{2}));  // GPU -> NVSwitch -> GPU
  // Across nodes: GPU -> NIC (PCIe) -> network -> NIC -> GPU, limited by the 25 GB/s NIC.
  EXPECT_EQ(narrowest(t, 3, 11), std::make_pair(25e9, std::size_t{4}));
}

}  // namespace
}  // namespace moesim
