// Memory closed forms: ZeRO's 16 bytes per parameter and its stage divisions, experts
// over their own data-parallel group, Korthikanti's activation formulas, in-flight
// micro-batches of the pipeline schedules.
#include <gtest/gtest.h>

#include "src/accounting/memory.hpp"
#include "src/accounting/params.hpp"
#include "src/core/error.hpp"
#include "src/model/model_json.hpp"

namespace moesim {
namespace {

// A dense GPT as in Korthikanti et al.: ffn = 4h, MHA, GELU, learned positions.
ModelSpec dense_gpt() {
  ModelSpec m;
  m.name = "dense";
  m.layers = 8;
  m.d_model = 1024;
  m.heads = 16;
  m.kv_heads = 16;
  m.head_dim = 64;
  m.ffn_dim = 4096;
  m.vocab = 32000;
  m.seq_len = 2048;
  m.max_positions = 2048;
  m.positions = Positions::learned;
  validate(m, "test");
  return m;
}

MemoryBreakdown states(const ModelSpec& m, const std::string& plan) {
  return memory_per_stage(m, parse_inline_plan(plan))[0].bytes;
}

TEST(Memory, MixedPrecisionAdamIs16BytesPerParameter) {
  const ModelSpec m = dense_gpt();
  const double P = static_cast<double>(count_params(m).total);
  const MemoryBreakdown b = states(m, "dp=8,precision=fp16");
  EXPECT_EQ(b.weights, 2 * P);
  EXPECT_EQ(b.grads, 2 * P);
  EXPECT_EQ(b.master + b.optimizer, 12 * P);
  EXPECT_EQ(b.states(), 16 * P);
}

TEST(Memory, ZeroStagesDivideAsTheZeroPaperSays) {
  // ZeRO (Rajbhandari et al. 2020), K = 12: stage 1 (2 + 2 + 12/N), stage 2 (2 + (2 + 12)/N),
  // stage 3 ((2 + 2 + 12)/N) bytes per parameter; plus what cannot be sharded: under stage
  // 2 the whole gradient of the piece in its backward (2 U), under stage 3 also its
  // gathered weights (4 U). Here the largest piece is the embedding with its positions.
  const ModelSpec m = dense_gpt();
  const double P = static_cast<double>(count_params(m).total), N = 8;
  const double U = 32000.0 * 1024 + 2048.0 * 1024;
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,zero=1").states(), (4 + 12 / N) * P);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,zero=2").states(), (2 + 14 / N) * P + 2 * U);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,zero=3").states(), 16 / N * P + 4 * U);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=fp32,zero=0").states(), 16 * P);  // 4 + 4 + 8
  // Nothing to shard over: nothing whole on top.
  EXPECT_DOUBLE_EQ(states(m, "dp=1,precision=bf16,zero=3").states(), 16 * P);
}

TEST(Memory, DistributedOptimizerMatchesMegatronsTable) {
  // Megatron-Core's distributed optimizer guide, bytes per parameter with d data-parallel
  // ranks: bf16 parameters with fp32 gradients 18, distributed 6 + 12/d; fp32 16 and 8 + 8/d.
  // (Its fp16 row, 20 and 4 + 16/d, also counts an fp32 copy of the main gradients that
  // moesim does not model.)
  const ModelSpec m = dense_gpt();
  const double P = static_cast<double>(count_params(m).total), d = 8;
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,grad_dtype=fp32").states(), 18 * P);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,grad_dtype=fp32,dist_opt=true").states(), (6 + 12 / d) * P);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=fp32").states(), 16 * P);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=fp32,dist_opt=true").states(), (8 + 8 / d) * P);
  // dist_opt is ZeRO 1 by another name.
  EXPECT_EQ(parse_inline_plan("dp=8,dist_opt=true").zero, 1);
  EXPECT_EQ(parse_inline_plan("dp=8,dist_opt=true,zero=1").zero, 1);
}

TEST(Memory, Fp8KeepsAOneByteCopyOfEveryLinearWeight) {
  const ModelSpec m = dense_gpt();
  const StageParams s = params_per_stage(m, parse_inline_plan("dp=8"))[0];
  const double linear = static_cast<double>(s.by_kind.attention + s.by_kind.dense_ffn);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,fp8=hybrid").weights - states(m, "dp=8,precision=bf16").weights, linear);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,fp8=e4m3,zero=3").weights -
                       states(m, "dp=8,precision=bf16,zero=3").weights,
                   linear / 8);
}

TEST(Memory, TheLargestShardedPieceIsALayerOrTheEmbeddingOrTheHead) {
  const ModelSpec m = dense_gpt();
  auto unit = [&](const std::string& plan, int stage) {
    const Plan p = parse_inline_plan(plan);
    return largest_sharded_unit_params(m, p, params_per_stage(m, p)[static_cast<std::size_t>(stage)]);
  };
  const std::int64_t h = 1024, layer = 12 * h * h + 13 * h;  // GPT-2 layer with biases
  EXPECT_EQ(unit("dp=8", 0), 32000 * h + 2048 * h);
  EXPECT_EQ(unit("dp=1", 0), 0);
  // pp=2: stage 1 holds layers and the tied head's copy with the final norm.
  EXPECT_EQ(unit("dp=4,pp=2", 1), std::max(layer, 32000 * h + 2 * h));
  // The 4.1B MoE: with ep = dp the experts are not sharded (one replica each), so a layer
  // counts only its dense part; with ep = dp/2 its local experts count too.
  const ModelSpec moe = load_model("configs/models/fairseq-moe-4.1b.json");
  const Plan p8 = parse_inline_plan("dp=8,ep=8"), p4 = parse_inline_plan("dp=8,ep=4");
  const StageParams s8 = params_per_stage(moe, p8)[0], s4 = params_per_stage(moe, p4)[0];
  const std::int64_t embedding = s8.by_kind.embedding + s8.by_kind.positions;
  EXPECT_EQ(largest_sharded_unit_params(moe, p8, s8), embedding);
  const std::int64_t moe_layer = s4.expert / moe.moe_layer_count();  // one MoE layer's local experts
  EXPECT_GT(largest_sharded_unit_params(moe, p4, s4), moe_layer);
  EXPECT_GE(largest_sharded_unit_params(moe, p4, s4), embedding);
}

TEST(Memory, ExpertStatesShardOverTheirOwnDataParallelGroup) {
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  // dp=8, ep=4: each expert is replicated on edp = 2 ranks.
  const auto stage = params_per_stage(m, parse_inline_plan("dp=8,ep=4"))[0];
  const double ne = static_cast<double>(stage.non_expert), ex = static_cast<double>(stage.expert);
  const MemoryBreakdown z1 = states(m, "dp=8,ep=4,precision=fp16,zero=1");
  EXPECT_DOUBLE_EQ(z1.master + z1.optimizer, 12 * (ne / 8 + ex / 2));
  EXPECT_DOUBLE_EQ(z1.weights, 2 * (ne + ex));
  const MemoryBreakdown z3 = states(m, "dp=8,ep=4,precision=fp16,zero=3");
  const double u4 = static_cast<double>(largest_sharded_unit_params(m, parse_inline_plan("dp=8,ep=4"), stage));
  EXPECT_DOUBLE_EQ(z3.states(), 16 * (ne / 8 + ex / 2) + 4 * u4);
  // fairseq --memory-efficient-fp16 --fp16-adam-stats: no master copy, fp16 moments: 8 bytes.
  const MemoryBreakdown fs = states(m, "dp=8,ep=8,precision=fp16,master_weights=false,optimizer_dtype=fp16,zero=3");
  const auto s8 = params_per_stage(m, parse_inline_plan("dp=8,ep=8"))[0];
  const double u8 = static_cast<double>(largest_sharded_unit_params(m, parse_inline_plan("dp=8,ep=8"), s8));
  EXPECT_DOUBLE_EQ(fs.states(), 8 * (static_cast<double>(s8.non_expert) / 8 + static_cast<double>(s8.expert)) + 4 * u8);
}

TEST(Memory, ActivationsMatchKorthikanti) {
  // Per layer, fp16, no sequence parallelism: s b h (10 + 24/t + 5 a s / (h t)).
  const ModelSpec m = dense_gpt();
  const double s = 2048, h = 1024, a = 16;
  for (int t : {1, 2, 4}) {
    for (int b : {1, 4}) {
      const std::string plan = "tp=" + std::to_string(t) + ",mbs=" + std::to_string(b) + ",precision=fp16";
      const double sbh = s * b * h;
      const double closed = sbh * (10 + 24.0 / t + 5 * a * s / (h * t));
      const double got = layer_activations(m, parse_inline_plan(plan), 0).total();
      std::printf("t=%d b=%d: Korthikanti %.0f, moesim %.0f\n", t, b, closed, got);
      EXPECT_DOUBLE_EQ(got, closed);
      // Selective recomputation drops exactly the 5as^2b/t term.
      EXPECT_DOUBLE_EQ(layer_activations(m, parse_inline_plan(plan + ",recompute=selective"), 0).total(),
                       sbh * (10 + 24.0 / t));
      // With sequence parallelism (their eq. 4 and 5): s b h (34/t + 5 a s / (h t)), and
      // s b h 34/t with selective recomputation.
      if (t > 1) {
        EXPECT_DOUBLE_EQ(layer_activations(m, parse_inline_plan(plan + ",sp=true"), 0).total(),
                         sbh * (34.0 / t + 5 * a * s / (h * t)));
        EXPECT_DOUBLE_EQ(layer_activations(m, parse_inline_plan(plan + ",sp=true,recompute=selective"), 0).total(),
                         sbh * 34.0 / t);
      }
    }
  }
}

TEST(Memory, Fp8SavesTheLinearLayersInputsInOneByte) {
  // Transformer Engine keeps the FP8 copy of a linear layer's input for its weight
  // gradient: QKV (h), projection (h / t), fc1 (h) and fc2 (4h / t) inputs a token, one byte
  // each instead of two; under sp the replicated ones split too. Blockwise scaling adds an
  // fp32 scale per 128 elements.
  const ModelSpec m = dense_gpt();
  const double sb = 2048, h = 1024;
  for (int t : {1, 2, 4}) {
    for (const std::string sp : {"", ",sp=true"}) {
      if (t == 1 && !sp.empty()) continue;
      const std::string base = "tp=" + std::to_string(t) + ",precision=bf16,attention=flash" + sp;
      const double rt = sp.empty() ? 1.0 : t;
      const double elements = sb * (2 * h / rt + 5 * h / t);
      const double bf16 = layer_activations(m, parse_inline_plan(base), 0).total();
      for (const char* fp8 : {",fp8=e4m3", ",fp8=hybrid", ",fp8=hybrid,fp8_recipe=tensorwise"})
        EXPECT_DOUBLE_EQ(bf16 - layer_activations(m, parse_inline_plan(base + fp8), 0).total(), elements) << base + fp8;
      EXPECT_DOUBLE_EQ(bf16 - layer_activations(m, parse_inline_plan(base + ",fp8=hybrid,fp8_recipe=blockwise"), 0).total(),
                       elements * (1 - 4.0 / 128))
          << base;
    }
  }
  // Mixtral-8x7B, dropless top-2 over 8 experts of 14336: the QKV and projection inputs
  // (4096 each), and every expert slot's fc1 (4096) and fc2 (14336) inputs; the router's
  // input stays in bf16.
  const ModelSpec x = load_model("configs/models/mixtral-8x7b-v0.1.json");
  const double tokens = 4096, slots = 2 * tokens;
  EXPECT_DOUBLE_EQ(layer_activations(x, parse_inline_plan("dp=8,ep=8,precision=bf16,attention=flash"), 0).total() -
                       layer_activations(x, parse_inline_plan("dp=8,ep=8,precision=bf16,attention=flash,fp8=hybrid"), 0).total(),
                   tokens * 2 * 4096 + slots * (4096 + 14336));
  // The FP8 weight copy: a scale per 128 x 128 block under blockwise.
  const StageParams s = params_per_stage(m, parse_inline_plan("dp=8"))[0];
  const double linear = static_cast<double>(s.by_kind.attention + s.by_kind.dense_ffn);
  EXPECT_DOUBLE_EQ(states(m, "dp=8,precision=bf16,fp8=hybrid,fp8_recipe=blockwise").weights -
                       states(m, "dp=8,precision=bf16").weights,
                   linear * (1 + 4.0 / (128 * 128)));
}

TEST(Memory, Fp8RecipeNeedsFp8AndIsWrittenOnlyWhenSet) {
  try {
    parse_inline_plan("dp=8,precision=bf16,fp8_recipe=blockwise");
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'fp8_recipe': expected fp8 e4m3 or hybrid: blockwise scales FP8 tensors"),
              std::string::npos)
        << e.what();
  }
  try {
    parse_inline_plan("dp=8,precision=bf16,fp8=hybrid,fp8_recipe=mxfp8");
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fp8_recipe"), std::string::npos) << e.what();
  }
  const Plan p = parse_inline_plan("dp=8,precision=bf16,fp8=hybrid,fp8_recipe=blockwise");
  EXPECT_EQ(p.fp8_recipe, Fp8Recipe::blockwise);
  EXPECT_EQ(parse_inline_plan(plan_to_inline(p)).fp8_recipe, Fp8Recipe::blockwise);
  EXPECT_EQ(plan_to_inline(parse_inline_plan("dp=8,precision=bf16,fp8=hybrid")).find("fp8_recipe"), std::string::npos);
}

TEST(Memory, FullRecomputationKeepsLayerInputs) {
  const ModelSpec m = dense_gpt();
  const Plan p = parse_inline_plan("precision=fp16,recompute=full");
  const double sbh = 2048.0 * 1024.0;
  const double one_layer = layer_activations(m, p, 0).total();
  const double head = 2 * sbh + 4 * 2048.0 * 32000.0;  // head input + fp32 logits
  EXPECT_DOUBLE_EQ(memory_per_stage(m, p)[0].bytes.activations, 8 * 2 * sbh + one_layer + head);
}

TEST(Memory, InFlightMicroBatchesPerSchedule) {
  // 1F1B: stage s holds pp - s; GPipe: all m; interleaved: first stage holds
  // pp (1 + (pp - 1) / (pp vpp)) stage-micro-batches (Korthikanti et al. section 4.2.3).
  Plan p = parse_inline_plan("dp=1,pp=4,gbs=16,schedule=1f1b");
  for (int s = 0; s < 4; ++s) EXPECT_EQ(in_flight_micro_batches(p, s), 4 - s);
  p = parse_inline_plan("pp=4,gbs=16,schedule=gpipe");
  for (int s = 0; s < 4; ++s) EXPECT_EQ(in_flight_micro_batches(p, s), 16);
  p = parse_inline_plan("pp=4,gbs=16,vpp=2,schedule=interleaved");
  EXPECT_DOUBLE_EQ(in_flight_micro_batches(p, 0), 4 * (1 + 3.0 / 8));
  // Few micro-batches: never more than exist.
  p = parse_inline_plan("pp=4,gbs=2,schedule=1f1b");
  EXPECT_EQ(in_flight_micro_batches(p, 0), 2);
}

TEST(Memory, DispatchBuffersSizedByCapacity) {
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  // S = 4 x 2048 tokens, E = 8, top-2, cf 1: capacity 2 ceil(S/E) = 2048 slots per expert.
  const MemoryBreakdown b = states(m, "dp=8,ep=8,mbs=4,precision=fp16");
  EXPECT_EQ(b.dispatch_buffers, 2.0 * 2 * 8 * 2048 * 2048);
}

}  // namespace
}  // namespace moesim
