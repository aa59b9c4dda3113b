// Seed 003 (PAI GPT-3 0.35B MoE-64): FasterTransformer's config.ini and the
// Megatron-DeepSpeed args.txt import to the same model, the same counts as
// configs/models/pai-gpt3-0.35b-moe64.json, and (args.txt) the training plan.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/accounting/params.hpp"
#include "src/model/model_json.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

using testing::import_fixture;

TEST(ImportPai, ConfigIniMapping) {
  const ImportResult r = import_fixture("pai-gpt3-0.35b-moe64.config.ini");
  const ModelSpec& m = r.model;
  EXPECT_EQ(r.format, "ft");
  EXPECT_EQ(m.layers, 24);
  EXPECT_EQ(m.d_model, 1024);
  EXPECT_EQ(m.heads, 16);
  EXPECT_EQ(m.head_dim, 64);
  EXPECT_EQ(m.ffn_dim, 4096);
  EXPECT_EQ(m.vocab, 51200);
  EXPECT_EQ(m.positions, Positions::learned);
  EXPECT_EQ(m.max_positions, 2048);
  EXPECT_TRUE(m.tied_embeddings);
  EXPECT_TRUE(m.bias);
  EXPECT_EQ(m.moe.experts, 64);
  EXPECT_EQ(m.moe.top_k, 1);
  EXPECT_EQ(m.moe.layers.every, 2);  // moe_layers [1, 3, ..., 23]
  EXPECT_EQ(m.moe.layers.offset, 1);
  EXPECT_TRUE(m.moe.layers.list.empty());
  EXPECT_FALSE(r.plan);
}

TEST(ImportPai, ArgsTxtMappingAndPlan) {
  const ImportResult r = import_fixture("pai-gpt3-0.35b-moe64.args.txt");
  const ModelSpec& m = r.model;
  EXPECT_EQ(r.format, "megatron");
  EXPECT_EQ(r.detail, "name:value dump");
  EXPECT_EQ(m.layers, 24);
  EXPECT_EQ(m.vocab, 51200);  // padded_vocab_size
  EXPECT_EQ(m.positions, Positions::learned);
  EXPECT_EQ(m.moe.experts, 64);
  EXPECT_EQ(m.moe.top_k, 1);
  // expert_interval 2: MoE iff (i+1) % 2 == 0, the layers config.ini lists.
  EXPECT_EQ(m.moe.layers.every, 2);
  EXPECT_EQ(m.moe.layers.offset, 1);
  ASSERT_TRUE(m.moe.capacity_factor);
  EXPECT_DOUBLE_EQ(*m.moe.capacity_factor, 1.0);
  ASSERT_TRUE(m.moe.eval_capacity_factor);
  EXPECT_DOUBLE_EQ(*m.moe.eval_capacity_factor, 1.0);
  EXPECT_EQ(m.moe.min_capacity, 4);
  EXPECT_DOUBLE_EQ(m.moe.aux_loss_weight, 0.01);
  EXPECT_EQ(m.moe.gate_precision, DType::fp32);

  ASSERT_TRUE(r.plan);
  const Plan& p = *r.plan;
  EXPECT_EQ(p.dp, 8);
  EXPECT_EQ(p.ep, 8);
  EXPECT_EQ(p.tp, 1);
  EXPECT_EQ(p.pp, 1);
  EXPECT_EQ(p.mbs, 4);
  EXPECT_EQ(p.gbs, 256);
  EXPECT_EQ(p.recompute, Recompute::selective);
  EXPECT_EQ(p.precision, DType::fp16);
  EXPECT_EQ(p.zero, 0);
  EXPECT_EQ(p.micro_batches(), 8);
}

TEST(ImportPai, BothFilesGiveTheSameCounts) {
  const ParamCounts ini = count_params(import_fixture("pai-gpt3-0.35b-moe64.config.ini").model);
  const ParamCounts args = count_params(import_fixture("pai-gpt3-0.35b-moe64.args.txt").model);
  EXPECT_EQ(ini.total, args.total);
  EXPECT_EQ(ini.active, args.active);
  EXPECT_EQ(ini.expert, args.expert);
  const std::string path = testing::source_path("configs/models/pai-gpt3-0.35b-moe64.json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not written yet";
  const ParamCounts hand = count_params(load_model(path));
  EXPECT_EQ(ini.total, hand.total);
  EXPECT_EQ(ini.active, hand.active);
  EXPECT_EQ(ini.expert, hand.expert);
}

// "0.35B" names the dense GPT-3 Medium-sized model the MoE was built on. The
// dense-equivalent here is what one token uses minus the 12 routers: word and position
// embeddings, 24 layers of attention, two LayerNorms and one d->4d->d FFN (one top-1
// expert in the MoE layers, the dense FFN elsewhere), and the final LayerNorm.
TEST(ImportPai, DenseEquivalentIsPoint35B) {
  const std::int64_t d = 1024, f = 4096, V = 51200, P = 2048, L = 24;
  const std::int64_t per_layer = 4 * (d * d + d) + 2 * (2 * d) + (d * f + f + f * d + d);
  const std::int64_t dense = V * d + P * d + L * per_layer + 2 * d;
  const ImportResult r = import_fixture("pai-gpt3-0.35b-moe64.args.txt");
  const ParamCounts c = count_params(r.model);
  const std::int64_t routers = 12 * d * 64;
  std::printf("PAI 0.35B MoE-64: active %lld, routers %lld, dense-equivalent %lld (closed form %lld)\n",
              static_cast<long long>(c.active), static_cast<long long>(routers), static_cast<long long>(c.active - routers),
              static_cast<long long>(dense));
  EXPECT_EQ(c.by_kind.router, routers);
  EXPECT_EQ(c.active - routers, dense);
  EXPECT_TRUE(testing::matches_published(c.active - routers, 0.35, 2));  // 0.3568e9, "0.35B"
}

}  // namespace
}  // namespace moesim::importers
