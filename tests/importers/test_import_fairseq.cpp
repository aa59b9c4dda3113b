// The fairseq importer on seed 000's cfg dict (fairseq MoE 15B): the mapping, the
// parameter count against a closed form written from the seed's module tree, and against
// the hand-written configs/models/fairseq-moe-15b.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/model/model_json.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

using testing::fixture;
using testing::import_fixture;
using testing::read_text;

// Replaces the one occurrence of `from` (which must be there).
void replace(std::string& s, const std::string& from, const std::string& to) {
  const std::size_t at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
}

ImportResult import_15b() { return import_fixture("fairseq-moe-15b.dict.txt", {"vocab=50264"}); }

TEST(ImportFairseq, Seed000Mapping) {
  const ImportResult r = import_15b();
  const ModelSpec& m = r.model;
  EXPECT_EQ(r.format, "fairseq");
  EXPECT_EQ(m.name, "fairseq-moe-15b");
  EXPECT_NE(m.source.find("fairseq-moe-15b.dict.txt"), std::string::npos);
  EXPECT_NE(m.source.find("format fairseq"), std::string::npos);
  EXPECT_EQ(m.layers, 12);
  EXPECT_EQ(m.d_model, 768);
  EXPECT_EQ(m.ffn_dim, 3072);
  EXPECT_EQ(m.heads, 12);
  EXPECT_EQ(m.vocab, 50264);
  EXPECT_EQ(m.seq_len, 2048);
  EXPECT_EQ(m.positions, Positions::sinusoidal);
  EXPECT_EQ(m.norm, Norm::layernorm);
  EXPECT_EQ(m.activation, Activation::gelu);
  EXPECT_TRUE(m.tied_embeddings);
  EXPECT_TRUE(m.bias);
  EXPECT_TRUE(m.final_norm);
  EXPECT_EQ(m.moe.experts, 512);
  EXPECT_EQ(m.moe.top_k, 2);
  EXPECT_EQ(m.moe.layers.every, 2);
  EXPECT_EQ(m.moe.layers.offset, 1);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(m.is_moe_layer(i), i % 2 == 1) << i;  // seed tree: layers 1, 3, ..., 11
  ASSERT_TRUE(m.moe.capacity_factor);
  EXPECT_DOUBLE_EQ(*m.moe.capacity_factor, 1.0);
  EXPECT_EQ(m.moe.capacity_rounding, CapacityRounding::per_choice);
  ASSERT_TRUE(m.moe.eval_capacity_factor);
  EXPECT_DOUBLE_EQ(*m.moe.eval_capacity_factor, 0.05 * 512 / 2);
  EXPECT_EQ(m.moe.gate_precision, DType::fp32);
  EXPECT_EQ(m.moe.second_expert_policy, SecondExpertPolicy::all);
  EXPECT_FALSE(m.moe.gate_bias);
  EXPECT_FALSE(r.plan);
  // The report says the eval capacity is approximate and where the defaults came from.
  bool approx = false;
  for (const std::string& n : r.report.notes) approx = approx || n.find("approximate") != std::string::npos;
  EXPECT_TRUE(approx);
  EXPECT_FALSE(r.report.defaulted.empty());
  EXPECT_FALSE(r.report.ignored.empty());
}

// The closed form, term by term from seed 000's module tree: Embedding(50264, 768) tied
// to the output projection, sinusoidal positions (no parameters), per layer q/k/v/out
// Linear(768, 768, bias=True) and two LayerNorm((768,)) with weight and bias; fc1
// Linear(768, 3072) and fc2 Linear(3072, 768) with biases in the 6 dense layers and in
// each of the 512 experts of the 6 MoE layers (1, 3, ..., 11), whose Top2Gate wg is
// Linear(768, 512, bias=False); a final LayerNorm.
TEST(ImportFairseq, Seed000CountEqualsClosedForm) {
  const std::int64_t d = 768, f = 3072, V = 50264, E = 512, L = 12, moe_layers = 6;
  const std::int64_t attention = 4 * (d * d + d);
  const std::int64_t layer_norms = 2 * (2 * d);
  const std::int64_t ffn = d * f + f + f * d + d;
  const std::int64_t gate = d * E;
  const std::int64_t embedding = V * d;
  const std::int64_t final_norm = 2 * d;
  const std::int64_t expected_total = L * (attention + layer_norms) + (L - moe_layers) * ffn +
                                      moe_layers * (E * ffn + gate) + embedding + final_norm;
  const std::int64_t expected_active = expected_total - moe_layers * (E - 2) * ffn;

  const ParamCounts c = count_params(import_15b().model);
  std::printf("fairseq MoE 15B: closed form %lld, imported %lld (%.2fB)\n", static_cast<long long>(expected_total),
              static_cast<long long>(c.total), static_cast<double>(c.total) / 1e9);
  EXPECT_EQ(c.total, expected_total);
  EXPECT_EQ(c.active, expected_active);
  EXPECT_EQ(c.expert, moe_layers * E * ffn);
  EXPECT_EQ(std::llround(static_cast<double>(c.total) / 1e9), 15);  // "15B" is 14.6e9 rounded
  EXPECT_TRUE(testing::matches_published(c.total, 14.6, 1));
}

TEST(ImportFairseq, Seed000CountEqualsTheHandWrittenConfig) {
  const std::string path = testing::source_path("configs/models/fairseq-moe-15b.json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not written yet";
  const ParamCounts hand = count_params(load_model(path));
  const ParamCounts imported = count_params(import_15b().model);
  EXPECT_EQ(imported.total, hand.total);
  EXPECT_EQ(imported.active, hand.active);
  EXPECT_EQ(imported.expert, hand.expert);
  EXPECT_EQ(imported.non_expert, hand.non_expert);
}

TEST(ImportFairseq, VocabularyMustBeGiven) {
  try {
    import_fixture("fairseq-moe-15b.dict.txt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), fixture("fairseq-moe-15b.dict.txt"));
    EXPECT_EQ(e.field(), "vocab");
    EXPECT_NE(std::string(e.what()).find("pass --set vocab=N: fairseq's dictionary size is not in the config dict"),
              std::string::npos);
  }
}

// The printed eval_lm cfg block of seed 000 has `model None`: said so, by field.
TEST(ImportFairseq, CfgBlockWithoutModelIsRefused) {
  try {
    import_fixture("fairseq-moe-15b.eval-cfg.txt", {"vocab=50264"});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "model");
    EXPECT_NE(std::string(e.what()).find("None"), std::string::npos);
  }
}

// A cfg block whose model line holds the dict imports like the dict; the task's
// tokens_per_sample and the criterion's gate-loss weight are read from their lines.
TEST(ImportFairseq, CfgBlockWithModelDict) {
  std::string dict = read_text(fixture("fairseq-moe-15b.dict.txt"));
  dict.pop_back();  // newline
  replace(dict, "'tokens_per_sample': 2048, ", "");
  std::string block = read_text(fixture("fairseq-moe-15b.eval-cfg.txt"));
  replace(block, "model        None", "model        " + dict);
  replace(block, "criterion    {'_name': 'cross_entropy', 'sentence_avg': True}",
          "criterion    {'_name': 'moe_cross_entropy', 'moe_gate_loss_wt': 0.01}");
  ImportOptions o;
  o.set = {"vocab=50264"};
  const ImportResult r = import_text(block, "cfg.txt", o);
  EXPECT_EQ(r.detail, "cfg block");
  EXPECT_EQ(r.model.seq_len, 2048);
  EXPECT_DOUBLE_EQ(r.model.moe.aux_loss_weight, 0.01);
  EXPECT_EQ(count_params(r.model).total, count_params(import_15b().model).total);
}

TEST(ImportFairseq, LearnedPositionsHaveFairseqsTwoExtraRows) {
  std::string dict = read_text(fixture("fairseq-moe-15b.dict.txt"));
  replace(dict, "'decoder_learned_pos': False", "'decoder_learned_pos': True");
  ImportOptions o;
  o.set = {"vocab=50264"};
  const ImportResult r = import_text(dict, "d.txt", o);
  EXPECT_EQ(r.model.positions, Positions::learned);
  EXPECT_EQ(r.model.max_positions, 2048 + 2);
}

TEST(ImportFairseq, Top1AndExpertDim) {
  std::string dict = read_text(fixture("fairseq-moe-15b.dict.txt"));
  replace(dict, "'moe_top1_expert': False", "'moe_top1_expert': True");
  replace(dict, "'moe_expert_ffn_dim': None", "'moe_expert_ffn_dim': 1024");
  replace(dict, "'moe_eval_capacity_token_fraction': 0.05", "'moe_eval_capacity_token_fraction': -1.0");
  ImportOptions o;
  o.set = {"vocab=50264", "seq_len=1024", "name=small"};
  const ImportResult r = import_text(dict, "d.txt", o);
  EXPECT_EQ(r.model.moe.top_k, 1);
  EXPECT_EQ(r.model.moe.expert_ffn_dim, 1024);
  EXPECT_FALSE(r.model.moe.eval_capacity_factor);
  EXPECT_EQ(r.model.seq_len, 1024);
  EXPECT_EQ(r.model.name, "small");
}

// Seed 001's single-node command line: 24 layers, d 2048, ffn 8192, 32 heads, 8 experts
// every other layer, --task dummy_lm (50,000 symbols). Its training log prints
// "num. non-expert model params: 908,423,168" and "num. expert model params: 402,776,064"
// per GPU, one expert of each MoE layer per GPU: the model has 908M + 8 x 403M = 4.1B.
TEST(ImportFairseq, Seed001CommandLineMatchesItsLog) {
  const ImportResult r = import_fixture("fairseq-moe-4.1b.train.sh");
  EXPECT_EQ(r.format, "fairseq");
  EXPECT_EQ(r.detail, "command line");
  const ModelSpec& m = r.model;
  EXPECT_EQ(m.layers, 24);
  EXPECT_EQ(m.d_model, 2048);
  EXPECT_EQ(m.vocab, 50000);
  EXPECT_EQ(m.seq_len, 2048);  // $TOKENS_PER_SAMPLE
  EXPECT_EQ(m.moe.experts, 8);  // $NUM_EXPERTS
  EXPECT_EQ(m.moe.top_k, 2);
  EXPECT_FALSE(m.moe.eval_capacity_factor);  // fraction -1.0
  EXPECT_DOUBLE_EQ(m.moe.aux_loss_weight, 0.01);
  EXPECT_EQ(m.activation, Activation::gelu);  // transformer_lm_gpt's default
  EXPECT_TRUE(m.final_norm);                   // base_lm_architecture forces pre-norm
  const ParamCounts c = count_params(m);
  EXPECT_EQ(c.non_expert, 908423168);
  EXPECT_EQ(c.expert / 8, 402776064);
  EXPECT_EQ(c.total, 908423168 + 8 * std::int64_t{402776064});
  EXPECT_TRUE(testing::matches_published(c.total, 4.1, 1));
  const std::string path = testing::source_path("configs/models/fairseq-moe-4.1b.json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not written yet";
  EXPECT_EQ(c.total, count_params(load_model(path)).total);
}

}  // namespace
}  // namespace moesim::importers
