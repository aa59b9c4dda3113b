// Parameter counts against the seeds' logged numbers and closed forms written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"

namespace moesim {
namespace {

ModelSpec model(const std::string& name) { return load_model("configs/models/" + name + ".json"); }

// A GELU FFN with biases: two d x f matrices, an f bias and a d bias.
std::int64_t gelu_ffn(std::int64_t d, std::int64_t f) { return 2 * d * f + f + d; }
// Attention with biases: q, k, v, o of d x d plus 4 d biases.
std::int64_t mha(std::int64_t d) { return 4 * d * d + 4 * d; }

TEST(Params, Seed001LoggedCountsPerGpu) {
  // seed 001: "num. non-expert model params: 908,423,168", "num. expert model params: 402,776,064"
  const ModelSpec m = model("fairseq-moe-4.1b");
  const auto stages = params_per_stage(m, parse_inline_plan("dp=8,ep=8"));
  ASSERT_EQ(stages.size(), 1u);
  EXPECT_EQ(stages[0].non_expert, 908'423'168);
  EXPECT_EQ(stages[0].expert, 402'776'064);
  // "the total parameter count is 908M + 8 * 403M = 4.1B"
  const ParamCounts c = count_params(m);
  EXPECT_EQ(c.total, 908'423'168 + 8 * INT64_C(402'776'064));
  EXPECT_EQ(std::llround(static_cast<double>(c.total) / 1e8), 41);
}

TEST(Params, Seed000Is15B) {
  const ModelSpec m = model("fairseq-moe-15b");
  const std::int64_t d = 768, f = 3072, L = 12, E = 512, V = 50264;
  const std::int64_t moe_layers = L / 2;
  const std::int64_t closed = V * d                          // tied embedding, sinusoidal positions
                              + L * (mha(d) + 2 * 2 * d)     // attention + two layernorms (weight, bias)
                              + (L - moe_layers) * gelu_ffn(d, f)
                              + moe_layers * (d * E + E * gelu_ffn(d, f))  // gate (no bias) + experts
                              + 2 * d;                        // final layernorm
  const ParamCounts c = count_params(m);
  std::printf("fairseq-moe-15b: closed form %lld, counted %lld\n", static_cast<long long>(closed),
              static_cast<long long>(c.total));
  EXPECT_EQ(c.total, closed);
  EXPECT_EQ(std::llround(static_cast<double>(c.total) / 1e9), 15);
}

TEST(Params, Seed001LargeRunIs142B) {
  const ModelSpec m = model("fairseq-moe-142b");
  const std::int64_t d = 4096, f = 16384, L = 32, E = 64, V = 50000;
  const std::int64_t closed = V * d + L * (mha(d) + 4 * d) + (L / 2) * gelu_ffn(d, f) +
                              (L / 2) * (d * E + E * gelu_ffn(d, f)) + 2 * d;
  EXPECT_EQ(count_params(m).total, closed);
  EXPECT_EQ(std::llround(static_cast<double>(closed) / 1e9), 142);
  // One expert per GPU on 64 GPUs: each rank holds 16 layers' worth of one expert.
  const auto stages = params_per_stage(m, parse_inline_plan("dp=64,ep=64"));
  EXPECT_EQ(stages[0].expert, 16 * gelu_ffn(d, f));
}

TEST(Params, Seed003DenseEquivalentIs035B) {
  // The PAI model's name counts the dense-equivalent model: top-1 means each token
  // uses one expert FFN per MoE layer, so without routers it is a dense 24-layer GPT.
  const ModelSpec m = model("pai-gpt3-0.35b-moe64");
  const std::int64_t d = 1024, f = 4096, L = 24, V = 51200, P = 2048, E = 64;
  const std::int64_t dense = V * d + P * d + L * (mha(d) + 4 * d + gelu_ffn(d, f)) + 2 * d;
  const ParamCounts c = count_params(m);
  EXPECT_EQ(c.active - (L / 2) * d * E, dense);
  EXPECT_EQ(std::llround(static_cast<double>(dense) / 1e7), 36);  // 0.357B: "0.35B" as named
  EXPECT_EQ(c.total, dense - (L / 2) * gelu_ffn(d, f) + (L / 2) * (d * E + E * gelu_ffn(d, f)));
}

// Rounds to the digits the seed's table shows: 68.9M -> 0.1M, 1.1B -> 0.1B.
std::string shown(std::int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.1fB", static_cast<double>(n) / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  return buf;
}

struct OpenLmRow {
  const char* size;
  const char* e8;
  const char* e32;
  const char* inference_e2;
};

TEST(Params, Seed002Tables) {
  // seed 002: "Training Parameters" (8 and 32 experts) and "Inference Parameters" (2 experts).
  const OpenLmRow rows[] = {{"41m", "68.9M", "164.5M", "45.0M"},
                            {"87m", "165.4M", "439.9M", "96.8M"},
                            {"160m", "360.6M", "1.0B", "190.7M"},
                            {"410m", "1.1B", "3.5B", "509.2M"},
                            {"830m", "2.4B", "7.9B", "1.1B"}};
  for (const OpenLmRow& r : rows) {
    SCOPED_TRACE(r.size);
    const std::string base = std::string("openlm-") + r.size;
    EXPECT_EQ(shown(count_params(model(base + "-e8")).total), r.e8);
    EXPECT_EQ(shown(count_params(model(base + "-e32")).total), r.e32);
    ModelSpec two = model(base + "-e8");
    two.moe.experts = 2;  // the inference row is the same model built with 2 experts
    EXPECT_EQ(shown(count_params(two).total), r.inference_e2);
  }
}

TEST(Params, TensorParallelShardsFollowMegatron) {
  const ModelSpec m = model("fairseq-moe-4.1b");
  const std::int64_t d = 2048, f = 8192, t = 4;
  // Column-parallel q/k/v (weights and biases split), row-parallel o (bias replicated).
  EXPECT_EQ(attention_params(m, 4), 4 * d * d / t + 3 * d / t + d);
  EXPECT_EQ(dense_ffn_params(m, 4), 2 * d * f / t + f / t + d);
  const auto stages = params_per_stage(m, parse_inline_plan("dp=2,tp=4,ep=2"));
  const ParamCounts c = count_params(m);
  // Sharded parts divide by t; replicated parts (norms, routers, row biases) do not.
  const std::int64_t replicated_per_layer = 4 * d /*norms*/ + d /*o bias*/;
  const std::int64_t replicated = 24 * replicated_per_layer + 12 * d /*fc2 bias, dense*/ + 12 * d * 8 /*routers*/ + 2 * d;
  const std::int64_t expert_bias_rep = 4 * 12 * d;  // fc2 bias of the 4 experts on this rank
  EXPECT_EQ(stages[0].non_expert, (c.non_expert - replicated) / t + replicated);
  EXPECT_EQ(stages[0].expert, (4 * 12 * (gelu_ffn(d, f) - d)) / t + expert_bias_rep);
}

TEST(Params, PipelineStagesPartitionTheModel) {
  for (const char* name : {"fairseq-moe-4.1b", "pai-gpt3-0.35b-moe64", "openlm-160m-e8"}) {
    SCOPED_TRACE(name);
    const ModelSpec m = model(name);
    for (const char* plan : {"pp=2", "pp=4", "pp=2,vpp=3,schedule=interleaved,gbs=4", "pp=3"}) {
      SCOPED_TRACE(plan);
      Plan p = parse_inline_plan(plan);
      if (m.layers % (p.pp * p.vpp) != 0) continue;
      const auto stages = params_per_stage(m, p);
      std::int64_t sum = 0;
      std::vector<int> seen(m.layers, 0);
      for (const auto& s : stages) {
        sum += s.total;
        for (int l : s.layers) ++seen[l];
      }
      for (int l = 0; l < m.layers; ++l) EXPECT_EQ(seen[l], 1) << "layer " << l;
      // A tied embedding is held twice (first stage, and last stage for the head).
      const std::int64_t copy = m.tied_embeddings ? m.vocab * m.d_model : 0;
      EXPECT_EQ(sum, count_params(m).total + copy);
    }
  }
}

TEST(Params, InterleavedStagesTakeEveryPpthChunk) {
  const ModelSpec m = model("fairseq-moe-4.1b");
  const auto layers = stage_layers(m, parse_inline_plan("pp=2,vpp=3,schedule=interleaved,gbs=2"), 1);
  // 24 layers in 6 chunks of 4; stage 1 holds chunks 1, 3, 5.
  const std::vector<int> expected{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23};
  EXPECT_EQ(layers, expected);
}

TEST(Params, UnevenFirstAndLastStagesTakeTheirLayersAndTheRestSplitEvenly) {
  const ModelSpec m = model("fairseq-moe-4.1b");  // 24 layers
  auto counts = [&](const std::string& plan) {
    const Plan p = parse_inline_plan(plan);
    check_plan(p, m, "test");
    std::vector<int> out;
    int next = 0;
    for (int s = 0; s < p.pp; ++s) {
      const std::vector<int> layers = stage_layers(m, p, s);
      for (int l : layers) EXPECT_EQ(l, next++) << plan;  // contiguous, in order
      out.push_back(static_cast<int>(layers.size()));
    }
    EXPECT_EQ(next, m.layers) << plan;
    return out;
  };
  EXPECT_EQ(counts("pp=4,first_stage_layers=3"), (std::vector<int>{3, 7, 7, 7}));
  EXPECT_EQ(counts("pp=4,last_stage_layers=6"), (std::vector<int>{6, 6, 6, 6}));
  EXPECT_EQ(counts("pp=5,first_stage_layers=3,last_stage_layers=3"), (std::vector<int>{3, 6, 6, 6, 3}));
  EXPECT_EQ(counts("pp=2,first_stage_layers=10,last_stage_layers=14"), (std::vector<int>{10, 14}));
  // DeepSeek-V3's 61 layers over 16 stages: one on the first, four on each of the others.
  ModelSpec v3 = m;
  v3.layers = 61;
  const Plan p16 = parse_inline_plan("pp=16,first_stage_layers=1");
  EXPECT_NO_THROW(check_plan(p16, v3, "test"));
  EXPECT_EQ(stage_layers(v3, p16, 0), (std::vector<int>{0}));
  EXPECT_EQ(stage_layers(v3, p16, 15), (std::vector<int>{57, 58, 59, 60}));
  for (const char* bad : {"pp=4,first_stage_layers=5", "pp=2,first_stage_layers=10,last_stage_layers=10",
                          "pp=4,first_stage_layers=24"}) {
    try {
      check_plan(parse_inline_plan(bad), m, "p");
      ADD_FAILURE() << bad << ": expected an error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("_stage_layers': expected the model's 24 layers"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_inline_plan("first_stage_layers=2"), InputError);  // needs pp > 1
  // With virtual stages each stage splits its count evenly over its chunks, and the layers
  // run through the chunks in order (Megatron-Core): pp 3, vpp 2, 4 layers on the first
  // stage, 10 on each other: chunks of 2, 5, 5, 2, 5, 5 layers.
  const Plan il = parse_inline_plan("pp=3,vpp=2,schedule=interleaved,gbs=6,first_stage_layers=4");
  EXPECT_NO_THROW(check_plan(il, m, "test"));
  EXPECT_EQ(stage_layers(m, il, 0), (std::vector<int>{0, 1, 12, 13}));
  EXPECT_EQ(stage_layers(m, il, 1), (std::vector<int>{2, 3, 4, 5, 6, 14, 15, 16, 17, 18}));
  EXPECT_EQ(stage_layers(m, il, 2), (std::vector<int>{7, 8, 9, 10, 11, 19, 20, 21, 22, 23}));
  // A stage's count must split over its virtual stages, and so must the middle's.
  EXPECT_THROW(parse_inline_plan("pp=2,vpp=2,schedule=interleaved,gbs=2,first_stage_layers=3"), InputError);
  try {
    check_plan(parse_inline_plan("pp=4,vpp=2,schedule=interleaved,gbs=4,first_stage_layers=2"), m, "p");
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("(22) to split evenly over the other 3 stages and their 2 virtual stages"),
              std::string::npos)
        << e.what();
  }
}

TEST(Params, ActiveCountsTopKExperts) {
  const ModelSpec m = model("fairseq-moe-4.1b");
  const ParamCounts c = count_params(m);
  EXPECT_EQ(c.active, c.non_expert + 12 * 2 * c.per_expert);
}

}  // namespace
}  // namespace moesim
