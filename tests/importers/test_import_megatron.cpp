// The Megatron importer: the three argument shapes, the shell-like reading of launch
// scripts, the MoE-layer list expressions, vocabulary padding, and the plan.
#include <gtest/gtest.h>

#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/importers/layer_pattern.hpp"
#include "src/importers/shell_script.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

using testing::import_fixture;

ImportResult import_megatron_text(const std::string& text, std::vector<std::string> set = {}) {
  ImportOptions o;
  o.format = "megatron";
  o.set = std::move(set);
  return import_text(text, "run.sh", o);
}

std::vector<std::string> words_of(const ShellScript& s, std::size_t command) {
  std::vector<std::string> out;
  for (const ShellWord& w : s.commands.at(command).words) out.push_back(w.text);
  return out;
}

ShellScript shell(const std::string& text) { return read_shell_script(text, "s.sh", nullptr); }

TEST(ShellScript, QuotesContinuationsAndComments) {
  const ShellScript s = shell("python train.py --a 'x y' --b \"q\\\"r\" \\\n  --c=3 # a comment\n# whole line\necho done");
  ASSERT_EQ(s.commands.size(), 2u);
  EXPECT_EQ(words_of(s, 0), (std::vector<std::string>{"python", "train.py", "--a", "x y", "--b", "q\"r", "--c=3"}));
  EXPECT_EQ(words_of(s, 1), (std::vector<std::string>{"echo", "done"}));
  EXPECT_EQ(s.commands[1].line, 4u);
}

TEST(ShellScript, VariablesArraysDefaultsArithmetic) {
  const ShellScript s = shell(
      "export A=1\nB=\"two words\"\nARR=(\n  --x 1  # note\n  --y \"$B\"\n)\nARR+=(--z)\nN=${UNSET:-\"8\"}\n"
      "M=$(($N*4+A))\ncmd $B \"$B\" ${ARR[@]} \"${ARR[@]}\" $N $M ${ARR[1]}\n");
  ASSERT_EQ(s.commands.size(), 1u);
  EXPECT_EQ(words_of(s, 0), (std::vector<std::string>{"cmd", "two", "words", "two words", "--x", "1", "--y", "two", "words",
                                                       "--z", "--x", "1", "--y", "two words", "--z", "8", "33", "1"}));
}

TEST(ShellScript, UnknownValuesAreMarkedNotGuessed) {
  const ShellScript s = shell("D=$1\nC=$(hostname)\ncmd --d $D --c \"$C\" --u $UNSET --ok 1 `date`");
  ASSERT_EQ(s.commands.size(), 1u);
  const auto& w = s.commands[0].words;
  EXPECT_EQ(w[2].unresolved, "$1");
  EXPECT_EQ(w[4].unresolved, "$(hostname)");
  EXPECT_EQ(w[6].unresolved, "UNSET");
  EXPECT_TRUE(w[8].unresolved.empty());
  EXPECT_EQ(w[9].unresolved.substr(0, 1), "`");
}

TEST(ShellScript, SetOverridesTheScript) {
  std::string nn = "4";
  const ShellScript s = read_shell_script("NN=2\ncmd $NN $OTHER", "s.sh", [&](const std::string& name) -> const std::string* {
    return name == "NN" || name == "OTHER" ? &nn : nullptr;
  });
  EXPECT_EQ(words_of(s, 0), (std::vector<std::string>{"cmd", "4", "4"}));
}

TEST(ShellScript, RedirectionsHeredocsAndControlFlow) {
  const ShellScript s = shell(
      "cat > cfg.yaml <<EOF\nnot: a command $X\nEOF\nif [ -n \"$X\" ]; then\n  Y=1\nfi\nrun --k v 2>&1 | tee log.txt\n");
  ASSERT_EQ(s.commands.size(), 4u);  // cat, [, run, tee
  EXPECT_EQ(words_of(s, 0), (std::vector<std::string>{"cat"}));
  EXPECT_EQ(words_of(s, 2), (std::vector<std::string>{"run", "--k", "v"}));
  EXPECT_EQ(words_of(s, 3), (std::vector<std::string>{"tee", "log.txt"}));
  EXPECT_FALSE(s.notes.empty());
}

TEST(ShellScript, SyntaxErrorsNameTheLine) {
  for (const char* bad : {"echo 'open\n", "A=(1 2\n", "echo \"x\n", "echo ${A\n", "echo $(date\n"}) {
    try {
      shell(std::string("ok\n") + bad);
      ADD_FAILURE() << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), "s.sh");
      EXPECT_EQ(e.field(), "line 2") << bad;
    }
  }
}

TEST(ShellScript, ExpansionIsCapped) {
  std::string bomb = "A=xxxxxxxx\n";
  for (int i = 0; i < 40; ++i) bomb += "A=\"$A$A\"\n";
  EXPECT_THROW(shell(bomb), InputError);
  std::string array_bomb = "A=($X)\n";
  for (int i = 0; i < 40; ++i) array_bomb += "A=(${A[@]} ${A[@]})\n";
  EXPECT_THROW(shell(array_bomb), InputError);
}

TEST(LayerPattern, ListExpressions) {
  auto eval = [](const char* e) { return eval_layer_list_expression(e, 1024, "f", "moe_layer_freq"); };
  std::vector<bool> v = eval("([0]+[1]*23)");
  ASSERT_EQ(v.size(), 24u);
  EXPECT_FALSE(v[0]);
  EXPECT_TRUE(v[23]);
  MoeLayers l = moe_layers_from_pattern(v);
  EXPECT_TRUE(l.list.empty());
  EXPECT_EQ(l.every, 1);
  EXPECT_EQ(l.offset, 1);
  l = moe_layers_from_pattern(eval("([1]*3+[0]*1)*3"));
  EXPECT_EQ(l.list, (std::vector<int>{0, 1, 2, 4, 5, 6, 8, 9, 10}));
  l = moe_layers_from_pattern(eval("[0, 1] * 4"));
  EXPECT_EQ(l.every, 2);
  EXPECT_EQ(l.offset, 1);
  l = moe_layers_from_pattern(eval("[0,1,0,1,0,0]"));  // stride 2 but layer 5 is dense: a list
  EXPECT_EQ(l.list, (std::vector<int>{1, 3}));
  for (const char* bad : {"[2]", "([0]+1)", "[1]*[2]", "(([1])", "[1]*100000", "7", "", "[1]+"}) {
    try {
      eval(bad);
      ADD_FAILURE() << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(e.field(), "moe_layer_freq") << bad;
    }
  }
}

TEST(ImportMegatron, MixtralLaunchScript) {
  const ImportResult r = import_fixture("mixtral-8x7b.megatron.sh");
  const ModelSpec& m = r.model;
  EXPECT_EQ(r.format, "megatron");
  EXPECT_EQ(r.detail, "command line");
  EXPECT_EQ(m.layers, 32);
  EXPECT_EQ(m.d_model, 4096);
  EXPECT_EQ(m.heads, 32);
  EXPECT_EQ(m.kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.ffn_dim, 14336);
  EXPECT_EQ(m.vocab, 32000);
  EXPECT_EQ(m.seq_len, 4096);
  EXPECT_EQ(m.positions, Positions::rotary);
  EXPECT_EQ(m.norm, Norm::rmsnorm);
  EXPECT_EQ(m.activation, Activation::swiglu);
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_FALSE(m.bias);
  EXPECT_EQ(m.moe.experts, 8);
  EXPECT_EQ(m.moe.top_k, 2);
  EXPECT_EQ(m.moe_layer_count(), 32);
  EXPECT_FALSE(m.moe.capacity_factor);
  EXPECT_EQ(m.moe.gate_precision, DType::fp32);
  EXPECT_DOUBLE_EQ(m.moe.aux_loss_weight, 0.01);
  ASSERT_TRUE(r.plan);
  const Plan& p = *r.plan;
  EXPECT_EQ(p.tp, 2);
  EXPECT_EQ(p.pp, 4);
  EXPECT_EQ(p.dp, 8);  // 8 nodes x 8 GPUs / (tp 2 x pp 4)
  EXPECT_EQ(p.ep, 8);
  EXPECT_EQ(p.vpp, 2);
  EXPECT_EQ(p.schedule, Schedule::interleaved);
  EXPECT_EQ(p.mbs, 1);
  EXPECT_EQ(p.gbs, 256);
  EXPECT_EQ(p.zero, 1);
  EXPECT_EQ(p.recompute, Recompute::selective);
  EXPECT_EQ(p.precision, DType::bf16);
  // The same model as HF's Mixtral-8x7B config.json.
  const ParamCounts hf = count_params(import_fixture("mixtral-8x7b-v0.1.config.json").model);
  const ParamCounts mg = count_params(m);
  EXPECT_EQ(mg.total, hf.total);
  EXPECT_EQ(mg.active, hf.active);
}

TEST(ImportMegatron, SetResolvesVariablesAndOverridesArguments) {
  ImportResult r = import_fixture("mixtral-8x7b.megatron.sh", {"SLURM_NNODES=16", "global_batch_size=64"});
  ASSERT_TRUE(r.plan);
  EXPECT_EQ(r.plan->dp, 16);  // 16 nodes x 8 / (tp 2 x pp 4)
  EXPECT_EQ(r.plan->gbs, 64);
  try {
    import_fixture("mixtral-8x7b.megatron.sh", {"not_an_argument=1"});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "--set");
    EXPECT_EQ(e.field(), "not_an_argument");
  }
}

const char* const kSmall =
    "torchrun --nproc_per_node 4 pretrain_gpt.py --num-layers 4 --hidden-size $HIDDEN --num-attention-heads 8 "
    "--seq-length 1024 --max-position-embeddings 1024 --vocab-size 50257 --tensor-model-parallel-size 2 "
    "--num-experts 4 --moe-layer-freq '([0]+[1]*3)' --micro-batch-size 2 --data-path $DATA --fp16\n";

TEST(ImportMegatron, UnresolvedVariableInAValueThatMatters) {
  try {
    import_megatron_text(kSmall);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "hidden_size");
    EXPECT_NE(std::string(e.what()).find("$HIDDEN"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--set HIDDEN=VALUE"), std::string::npos) << e.what();
  }
  // $DATA stays unresolved: --data-path does not change the model.
  const ImportResult r = import_megatron_text(kSmall, {"HIDDEN=512"});
  EXPECT_EQ(r.model.d_model, 512);
  EXPECT_EQ(r.model.vocab, 50432);  // 50257 padded to a multiple of 128 x tp 2
  EXPECT_EQ(r.model.moe.layers.every, 1);
  EXPECT_EQ(r.model.moe.layers.offset, 1);
  EXPECT_EQ(r.model.moe.top_k, 2);  // Megatron-Core default
  ASSERT_TRUE(r.plan);
  EXPECT_EQ(r.plan->dp, 2);  // torchrun's 4 processes / tp 2
  EXPECT_EQ(r.plan->gbs, 4);
  EXPECT_EQ(r.plan->precision, DType::fp16);
}

TEST(ImportMegatron, ContextAndExpertTensorParallelismBecomeCpAndEtp) {
  // A Megatron-Core Qwen3-30B-A3B style launch with MoE parallel folding: attention on
  // tp 2 x cp 2 x dp 16, experts on etp 1 x ep 8 x edp 8.
  const ImportResult r = import_megatron_text(
      "torchrun pretrain_gpt.py --num-layers 48 --hidden-size 2048 --num-attention-heads 32 --group-query-attention "
      "--num-query-groups 4 --kv-channels 128 --ffn-hidden-size 6144 --seq-length 8192 --max-position-embeddings 8192 "
      "--num-experts 128 --moe-router-topk 8 --moe-ffn-hidden-size 768 --swiglu --normalization RMSNorm "
      "--position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear --bf16 "
      "--tensor-model-parallel-size 2 --context-parallel-size 2 --expert-model-parallel-size 8 "
      "--expert-tensor-parallel-size 1 --micro-batch-size 1 --global-batch-size 256 --world-size 64 "
      "--vocab-size 151936 --use-distributed-optimizer\n");
  ASSERT_TRUE(r.plan);
  EXPECT_EQ(r.plan->cp, 2);
  EXPECT_EQ(r.plan->etp, 1);
  EXPECT_EQ(r.plan->dp, 16);  // 64 / (tp 2 x cp 2)
  EXPECT_EQ(r.plan->world(), 64);
  EXPECT_EQ(r.plan->edp(), 8);
  EXPECT_EQ(r.plan->attention, AttentionImpl::flash);  // ring attention runs on fused kernels
  // etp equal to tp is the default and stays unset.
  const ImportResult same = import_megatron_text(
      "torchrun pretrain_gpt.py --num-layers 2 --hidden-size 256 --num-attention-heads 4 --seq-length 128 "
      "--max-position-embeddings 128 --num-experts 4 --tensor-model-parallel-size 2 --expert-tensor-parallel-size 2 "
      "--world-size 4 --vocab-size 1024\n");
  ASSERT_TRUE(same.plan);
  EXPECT_EQ(same.plan->etp, 0);
  EXPECT_EQ(same.plan->cp, 1);
}

TEST(ImportMegatron, SequenceParallelGradientPrecisionAndFp8BecomePlanFields) {
  const std::string base =
      "torchrun pretrain_gpt.py --num-layers 2 --hidden-size 256 --num-attention-heads 4 --seq-length 128 "
      "--max-position-embeddings 128 --num-experts 4 --tensor-model-parallel-size 2 --world-size 4 "
      "--vocab-size 1024 --bf16 --sequence-parallel --accumulate-allreduce-grads-in-fp32 ";
  const ImportResult r = import_megatron_text(base + "--fp8-format hybrid --fp8-recipe blockwise\n");
  ASSERT_TRUE(r.plan);
  EXPECT_TRUE(r.plan->sp);
  EXPECT_EQ(r.plan->grads(), DType::fp32);
  EXPECT_EQ(r.plan->fp8, Fp8::hybrid);
  EXPECT_EQ(r.plan->fp8_recipe, Fp8Recipe::blockwise);
  // Megatron's default recipe is delayed scaling.
  const ImportResult d = import_megatron_text(base + "--fp8-format e4m3\n");
  ASSERT_TRUE(d.plan);
  EXPECT_EQ(d.plan->fp8, Fp8::e4m3);
  EXPECT_EQ(d.plan->fp8_recipe, Fp8Recipe::delayed);
  // MXFP8 is Blackwell's; moesim refuses it by name.
  try {
    import_megatron_text(base + "--fp8-format hybrid --fp8-recipe mxfp8\n");
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fp8_recipe"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mxfp8"), std::string::npos) << e.what();
  }
}

TEST(ImportMegatron, UnevenEndStagesGivenOrCountedFromEmbeddingAndLoss) {
  const std::string base =
      "torchrun pretrain_gpt.py --num-layers 30 --hidden-size 256 --num-attention-heads 4 --seq-length 128 "
      "--max-position-embeddings 128 --num-experts 4 --pipeline-model-parallel-size 4 --world-size 4 "
      "--vocab-size 1024 ";
  // 30 layers + embedding + loss = 32 units, 8 a stage: 7, 8, 8, 7 layers.
  const ImportResult both = import_megatron_text(
      base + "--account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split\n");
  ASSERT_TRUE(both.plan);
  EXPECT_EQ(both.plan->first_stage_layers, 7);
  EXPECT_EQ(both.plan->last_stage_layers, 7);
  const ImportResult given =
      import_megatron_text(base + "--decoder-first-pipeline-num-layers 6 --decoder-last-pipeline-num-layers 8\n");
  ASSERT_TRUE(given.plan);
  EXPECT_EQ(given.plan->first_stage_layers, 6);
  EXPECT_EQ(given.plan->last_stage_layers, 8);
  // 30 + 1 units do not split over 4 stages: the argument is named.
  try {
    import_megatron_text(base + "--account-for-embedding-in-pipeline-split\n");
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "account_for_embedding_in_pipeline_split");
  }
}

TEST(ImportMegatron, UnresolvedVariableWhereFlagsBelong) {
  try {
    import_megatron_text("python pretrain_gpt.py $MODEL_ARGS --seq-length 128\n");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "MODEL_ARGS");
    EXPECT_NE(std::string(e.what()).find("--set MODEL_ARGS=VALUE"), std::string::npos);
  }
  const ImportResult r = import_megatron_text(
      "python pretrain_gpt.py $MODEL_ARGS --seq-length 128\n",
      {"MODEL_ARGS=--num-layers 2 --hidden-size 64 --num-attention-heads 4 --padded-vocab-size 1000"});
  EXPECT_EQ(r.model.layers, 2);
  EXPECT_EQ(r.model.vocab, 1000);
  EXPECT_FALSE(r.plan);
}

TEST(ImportMegatron, LogArgumentsBlock) {
  const std::string log =
      "using world size: 16, data-parallel size: 4\n"
      "------------------------ arguments ------------------------\n"
      "  num_layers ...................................... 12\n"
      "  hidden_size ..................................... 768\n"
      "  num_attention_heads ............................. 12\n"
      "  seq_length ...................................... 2048\n"
      "  max_position_embeddings ......................... 2048\n"
      "  padded_vocab_size ............................... 50304\n"
      "  num_experts ..................................... 16\n"
      "  moe_router_topk ................................. 1\n"
      "  moe_layer_freq .................................. [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]\n"
      "  moe_expert_capacity_factor ...................... 1.25\n"
      "  swiglu .......................................... False\n"
      "  add_bias_linear ................................. False\n"
      "  untie_embeddings_and_output_weights ............. True\n"
      "  world_size ...................................... 16\n"
      "  tensor_model_parallel_size ...................... 4\n"
      "  expert_model_parallel_size ...................... 4\n"
      "  micro_batch_size ................................ 8\n"
      "  global_batch_size ............................... 512\n"
      "  recompute_granularity ........................... full\n"
      "  bf16 ............................................ True\n"
      "-------------------- end of arguments ---------------------\n"
      "building GPT model ...\n";
  ImportOptions o;
  const ImportResult r = import_text(log, "train.log", o);
  EXPECT_EQ(r.format, "megatron");
  EXPECT_EQ(r.detail, "arguments block");
  EXPECT_EQ(r.model.layers, 12);
  EXPECT_EQ(r.model.vocab, 50304);
  EXPECT_FALSE(r.model.bias);
  EXPECT_FALSE(r.model.tied_embeddings);
  EXPECT_EQ(r.model.moe.layers.every, 2);
  EXPECT_EQ(r.model.moe.layers.offset, 1);
  ASSERT_TRUE(r.model.moe.capacity_factor);
  EXPECT_DOUBLE_EQ(*r.model.moe.capacity_factor, 1.25);
  EXPECT_EQ(r.model.moe.capacity_rounding, CapacityRounding::total);
  ASSERT_TRUE(r.plan);
  EXPECT_EQ(r.plan->dp, 4);
  EXPECT_EQ(r.plan->ep, 4);
  EXPECT_EQ(r.plan->recompute, Recompute::full);
  EXPECT_EQ(r.plan->precision, DType::bf16);
  EXPECT_EQ(r.plan->micro_batches(), 16);
}

TEST(ImportMegatron, MissingVocabularyAskedFor) {
  try {
    import_megatron_text("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 128\n");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "padded_vocab_size");
    EXPECT_NE(std::string(e.what()).find("--set vocab=N"), std::string::npos);
  }
  const ImportResult r = import_megatron_text("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 128 --swiglu\n",
                                              {"vocab=1000"});
  EXPECT_EQ(r.model.vocab, 1000);
  EXPECT_EQ(r.model.ffn_dim, 128);  // Megatron's SwiGLU default int(4h * 2/3 / 64) * 64
  EXPECT_EQ(r.model.positions, Positions::learned);
  EXPECT_EQ(r.model.max_positions, 128);
}

}  // namespace
}  // namespace moesim::importers
