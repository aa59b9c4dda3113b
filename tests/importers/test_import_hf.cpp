// The HuggingFace importer on six public MoE configs: parameter counts against the
// published totals and active counts, to the precision they were published, and the
// family-specific mapping (qkv bias, q/k norms, MLA, shared experts, layer selection).
#include <gtest/gtest.h>

#include <algorithm>

#include "src/accounting/flops.hpp"
#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/importers/huggingface.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

using testing::import_fixture;
using testing::matches_published;

// How a publisher counts "active": DeepSeek leaves out the input embedding (a lookup,
// no multiply); the others count every parameter a token touches.
enum class Active { all, without_input_embedding };

struct Published {
  const char* fixture;
  double total_b;  // billions, as published
  int total_decimals;
  double active_b;
  int active_decimals;
  Active convention;
  const char* source;
};

const Published kPublished[] = {
    {"mixtral-8x7b-v0.1.config.json", 46.7, 1, 12.9, 1, Active::all, "Mistral AI, Mixtral of Experts (46.7B total, 12.9B active)"},
    {"olmoe-1b-7b-0924.config.json", 6.9, 1, 1.3, 1, Active::all, "OLMoE paper/model card (6.9B total, 1.3B active)"},
    {"deepseek-v2-lite.config.json", 15.7, 1, 2.4, 1, Active::without_input_embedding, "DeepSeek-V2 paper (15.7B, 2.4B activated)"},
    {"qwen1.5-moe-a2.7b.config.json", 14.3, 1, 2.7, 1, Active::all, "Qwen1.5-MoE blog (14.3B total, 2.7B activated)"},
    {"qwen3-30b-a3b.config.json", 30.5, 1, 3.3, 1, Active::all, "Qwen3-30B-A3B model card (30.5B total, 3.3B activated)"},
    {"qwen3-235b-a22b.config.json", 235, 0, 22, 0, Active::all, "Qwen3-235B-A22B model card (235B total, 22B activated)"},
    {"mixtral-8x22b-v0.1.config.json", 141, 0, 39, 0, Active::all, "Mistral AI, Mixtral 8x22B announcement (141B total, 39B active)"},
    {"deepseek-v3.config.json", 671, 0, 37, 0, Active::without_input_embedding, "DeepSeek-V3 report (671B total without MTP, 37B activated)"},
    // OpenAI's gpt-oss model card table counts the unembedding but not the embedding as active.
    {"gpt-oss-20b.config.json", 20.91, 2, 3.61, 2, Active::without_input_embedding, "gpt-oss model card (20.91B total, 3.61B active)"},
    {"gpt-oss-120b.config.json", 116.83, 2, 5.13, 2, Active::without_input_embedding, "gpt-oss model card (116.83B total, 5.13B active)"},
};

TEST(ImportHf, CountsMatchThePublishedFigures) {
  for (const Published& p : kPublished) {
    const ImportResult r = import_fixture(p.fixture);
    const ParamCounts c = count_params(r.model);
    const std::int64_t active =
        p.convention == Active::all ? c.active : c.active - c.by_kind.embedding;
    std::printf("%-32s total %8.3fB (published %g)  active %7.3fB (published %g)\n", p.fixture,
                static_cast<double>(c.total) / 1e9, p.total_b, static_cast<double>(active) / 1e9, p.active_b);
    EXPECT_TRUE(matches_published(c.total, p.total_b, p.total_decimals)) << p.fixture << ": " << p.source;
    EXPECT_TRUE(matches_published(active, p.active_b, p.active_decimals)) << p.fixture << ": " << p.source;
  }
}

// Exact counts, so a change in the accounting or the importer shows up here first.
TEST(ImportHf, ExactCounts) {
  struct Exact {
    const char* fixture;
    std::int64_t total, active;
  };
  const Exact cases[] = {
      {"mixtral-8x7b-v0.1.config.json", 46702792704, 12879925248},
      {"olmoe-1b-7b-0924.config.json", 6919161856, 1282017280},
      {"deepseek-v2-lite.config.json", 15706484224, 2661150208},
      {"qwen1.5-moe-a2.7b.config.json", 14315735040, 2689124352},
      {"qwen3-30b-a3b.config.json", 30532122624, 3353032704},
      {"deepseek-v3.config.json", 671026404352, 37552282624},
      // By hand for gpt-oss-20b: per layer attention with biases 26,550,080, norms 5,760, router
      // with bias 92,192, 32 experts of 24,891,840 (SwiGLU with biases); embedding and
      // unembedding 2 x 579,133,440; final norm 2,880.
      {"gpt-oss-20b.config.json", 20914755648, 4187439168},
      {"gpt-oss-120b.config.json", 116829154368, 5711980608},
  };
  for (const Exact& e : cases) {
    const ParamCounts c = count_params(import_fixture(e.fixture).model);
    EXPECT_EQ(c.total, e.total) << e.fixture;
    EXPECT_EQ(c.active, e.active) << e.fixture;
  }
}

TEST(ImportHf, Mixtral) {
  const ModelSpec m = import_fixture("mixtral-8x7b-v0.1.config.json").model;
  EXPECT_EQ(m.name, "mixtral-8x7b-v0.1");
  EXPECT_EQ(m.layers, 32);
  EXPECT_EQ(m.kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.activation, Activation::swiglu);
  EXPECT_EQ(m.norm, Norm::rmsnorm);
  EXPECT_EQ(m.positions, Positions::rotary);
  EXPECT_FALSE(m.bias);
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_EQ(m.moe.experts, 8);
  EXPECT_EQ(m.moe.top_k, 2);
  EXPECT_EQ(m.moe_layer_count(), 32);
  EXPECT_FALSE(m.moe.capacity_factor);  // dropless
  EXPECT_EQ(m.seq_len, 32768);
  EXPECT_DOUBLE_EQ(m.moe.aux_loss_weight, 0.02);
}

TEST(ImportHf, Qwen2MoeHasQkvBiasAndOneSharedExpert) {
  const ImportResult r = import_fixture("qwen1.5-moe-a2.7b.config.json");
  const ModelSpec& m = r.model;
  EXPECT_TRUE(m.qkv_bias);
  EXPECT_FALSE(m.bias);
  EXPECT_EQ(m.moe.shared_experts, 1);
  EXPECT_EQ(m.moe.shared_expert_ffn_dim, 5632);
  EXPECT_EQ(m.moe.expert_ffn_dim, 1408);
  EXPECT_EQ(m.moe.experts, 60);
  EXPECT_EQ(m.moe.top_k, 4);
  EXPECT_EQ(m.moe_layer_count(), 24);
  bool gate_note = false;
  for (const std::string& n : r.report.notes) gate_note = gate_note || n.find("sigmoid gate") != std::string::npos;
  EXPECT_TRUE(gate_note) << "the shared expert's gate is not modelled: the report must say so";
}

TEST(ImportHf, GptOssHasBiasesEverywhereAndItsRopeBase) {
  const ImportResult r = import_fixture("gpt-oss-120b.config.json");
  const ModelSpec& m = r.model;
  EXPECT_EQ(m.layers, 36);
  EXPECT_EQ(m.heads, 64);
  EXPECT_EQ(m.kv_heads, 8);
  EXPECT_EQ(m.head_dim, 64);
  EXPECT_TRUE(m.bias);
  EXPECT_EQ(m.moe.experts, 128);
  EXPECT_EQ(m.moe.top_k, 4);
  EXPECT_EQ(m.moe.expert_bias, std::optional<bool>(true));
  EXPECT_TRUE(m.moe.gate_bias);
  EXPECT_EQ(m.moe_layer_count(), 36);
  EXPECT_DOUBLE_EQ(m.rope_theta, 150000.0);
  EXPECT_DOUBLE_EQ(m.moe.aux_loss_weight, 0.9);
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_EQ(m.activation, Activation::swiglu);
}

TEST(ImportHf, Qwen3MoeHasPerHeadQkNormAndMlpOnlyLayers) {
  ModelSpec m = import_fixture("qwen3-30b-a3b.config.json").model;
  EXPECT_EQ(m.qk_norm, QkNorm::per_head);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.kv_heads, 4);
  EXPECT_EQ(m.moe.shared_experts, 0);
  EXPECT_EQ(m.moe.expert_ffn_dim, 768);
  std::string text = testing::read_text(testing::fixture("qwen3-30b-a3b.config.json"));
  text.replace(text.find("\"mlp_only_layers\": []"), 21, "\"mlp_only_layers\": [0, 47]");
  text.replace(text.find("\"decoder_sparse_step\": 1"), 24, "\"decoder_sparse_step\": 2");
  ImportOptions o;
  m = import_text(text, "q.json", o).model;
  EXPECT_EQ(m.moe_layer_count(), 23);  // odd layers 1..45 (47 is dense)
  EXPECT_FALSE(m.moe.layers.list.empty());
  EXPECT_FALSE(m.is_moe_layer(47));
  EXPECT_TRUE(m.is_moe_layer(45));
}

TEST(ImportHf, OlmoeHasFullQkNorm) {
  const ModelSpec m = import_fixture("olmoe-1b-7b-0924.config.json").model;
  EXPECT_EQ(m.qk_norm, QkNorm::full);
  EXPECT_EQ(m.moe.experts, 64);
  EXPECT_EQ(m.moe.top_k, 8);
  EXPECT_EQ(m.expert_ffn(), 1024);
}

TEST(ImportHf, DeepSeekMlaLayersAndRouter) {
  const ModelSpec lite = import_fixture("deepseek-v2-lite.config.json").model;
  ASSERT_TRUE(lite.mla);
  EXPECT_EQ(lite.mla->q_lora_rank, 0);  // null: a full-rank query projection
  EXPECT_EQ(lite.mla->kv_lora_rank, 512);
  EXPECT_EQ(lite.moe.layers.offset, 1);  // first_k_dense_replace 1
  EXPECT_EQ(lite.moe_layer_count(), 26);
  EXPECT_EQ(lite.moe.shared_experts, 2);
  EXPECT_EQ(lite.shared_ffn(), 1408);
  EXPECT_EQ(lite.moe.router_score, RouterScore::softmax);
  const ImportResult v3 = import_fixture("deepseek-v3.config.json");
  ASSERT_TRUE(v3.model.mla);
  EXPECT_EQ(v3.model.mla->q_lora_rank, 1536);
  EXPECT_EQ(v3.model.moe.layers.offset, 3);
  EXPECT_EQ(v3.model.moe_layer_count(), 58);
  EXPECT_EQ(v3.model.moe.router_score, RouterScore::sigmoid);
  EXPECT_EQ(v3.model.moe.shared_experts, 1);
  EXPECT_EQ(v3.model.mtp_layers, 1);  // num_nextn_predict_layers
  EXPECT_EQ(v3.model.moe.expert_groups, 8);  // n_group
  EXPECT_EQ(v3.model.moe.groups_per_token, 4);  // topk_group
  EXPECT_EQ(lite.moe.expert_groups, 0);  // n_group 1: no limit
}

TEST(ImportHf, DeepSeekV3MultiTokenPredictionIsCountedApart) {
  // README_WEIGHTS.md of DeepSeek-V3: the MTP module has "11.5B unique parameters,
  // excluding the shared 0.9B Embedding and 0.9B output Head" and "2.4B activated,
  // including" them. Its structure: enorm and hnorm, eh_proj (2d -> d), one transformer
  // layer like the main model's (an MoE layer here) and shared_head.norm.
  const ModelSpec m = import_fixture("deepseek-v3.config.json", {"seq_len=4096"}).model;
  const ParamCounts c = count_params(m);
  const std::int64_t d = 7168, V = 129280;
  const std::int64_t layer = attention_params(m, 1) + 2 * d + router_params(m) + shared_expert_params(m, 1) +
                             256 * expert_ffn_params(m, 1);
  EXPECT_EQ(c.mtp_total, 3 * d + 2 * d * d + layer);  // 11,610,067,968
  EXPECT_EQ(c.mtp_active, 3 * d + 2 * d * d + layer - 248 * expert_ffn_params(m, 1));
  // The main model's counts do not include it: 671B, as before.
  EXPECT_EQ(c.total, 671026404352);
  // DeepSeek's published figures are met to their precision without eh_proj (0.10B),
  // which their README lists in the module but its counts leave out: 11.61B with it.
  const std::int64_t eh_proj = 2 * d * d;
  EXPECT_EQ(c.mtp.mtp_projection, eh_proj);
  EXPECT_TRUE(testing::matches_published(c.mtp_total - eh_proj, 11.5, 1)) << c.mtp_total - eh_proj;
  EXPECT_FALSE(testing::matches_published(c.mtp_total, 11.5, 1)) << c.mtp_total;
  EXPECT_TRUE(testing::matches_published(c.mtp_active - eh_proj + 2 * V * d, 2.4, 1)) << c.mtp_active;
}

TEST(ImportHf, TextConfigIsUnwrappedAndUnknownKeysListed) {
  const std::string text = R"({"model_type": "some_vl", "vision_config": {"depth": 2}, "tie_word_embeddings": false,
    "text_config": {"model_type": "olmoe", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                    "intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2, "vocab_size": 100,
                    "max_position_embeddings": 256, "brand_new_key": 1}})";
  ImportOptions o;
  const ImportResult r = import_text(text, "vl.json", o);
  EXPECT_EQ(r.detail, "olmoe");
  EXPECT_EQ(r.model.layers, 2);
  EXPECT_FALSE(r.model.tied_embeddings);
  const auto& ig = r.report.ignored;
  EXPECT_NE(std::find(ig.begin(), ig.end(), "text_config.brand_new_key"), ig.end());
  EXPECT_NE(std::find(ig.begin(), ig.end(), "vision_config"), ig.end());
}

TEST(ImportHf, UnknownFamilyNamesModelTypeAndTheFamilies) {
  ImportOptions o;
  try {
    import_text(R"({"model_type": "llama", "num_hidden_layers": 2})", "llama.json", o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "llama.json");
    EXPECT_EQ(e.field(), "model_type");
    const std::string what = e.what();
    EXPECT_NE(what.find("\"llama\""), std::string::npos);
    EXPECT_NE(what.find(kHfFamilies), std::string::npos) << what;
  }
}

TEST(ImportHf, DeepSeekV3MlaFlopsInClosedForm) {
  // MLA per layer (d 7168, 128 heads, q rank 1536, kv rank 512, nope 128, rope 64, v 128):
  // projections q = d r_q + r_q H (nope + rope), kv = d (r_kv + rope) + r_kv H (nope + v),
  // o = H v d: 48,758,784 + 20,905,984 + 117,440,512 = 187,105,280 weights, 2 FLOPs each per
  // token; scores and values 2 s^2 H (nope + rope + v). 61 layers, s = 4096.
  const ModelSpec m = import_fixture("deepseek-v3.config.json", {"seq_len=4096"}).model;
  const double per_layer = 7168.0 * 1536 + 1536.0 * 128 * 192 + 7168.0 * 576 + 512.0 * 128 * 256 + 128.0 * 128 * 7168;
  EXPECT_EQ(per_layer, 187105280.0);
  // The same weights as the parameter count has, less the two latent norms' gains.
  EXPECT_EQ(static_cast<double>(attention_params(m, 1) - 1536 - 512), per_layer);
  // 61 layers and the multi-token prediction module's one.
  const ForwardFlops f = forward_flops(m);
  const double s = 4096;
  EXPECT_EQ(m.mtp_layers, 1);
  EXPECT_DOUBLE_EQ(f.qkv + f.attention_out, 62 * 2 * s * per_layer);
  EXPECT_DOUBLE_EQ(f.attention_scores, 62 * 2 * s * s * 128 * (192.0 + 128));
}

TEST(ImportHf, SeqLenOverride) {
  const ModelSpec m = import_fixture("deepseek-v3.config.json", {"seq_len=4096"}).model;
  EXPECT_EQ(m.seq_len, 4096);
}

}  // namespace
}  // namespace moesim::importers
