// FLOP accounting against Megatron's closed form (Narayanan et al. 2021, eq. 3) and
// capacity padding of expert buffers.
#include <gtest/gtest.h>

#include "src/accounting/capacity.hpp"
#include "src/accounting/flops.hpp"
#include "src/accounting/params.hpp"
#include "src/model/model_json.hpp"

namespace moesim {
namespace {

ModelSpec gpt(std::int64_t h, int L, std::int64_t V, std::int64_t s) {
  ModelSpec m;
  m.name = "gpt";
  m.layers = L;
  m.d_model = h;
  m.heads = 16;
  m.kv_heads = 16;
  m.head_dim = h / 16;
  m.ffn_dim = 4 * h;
  m.vocab = V;
  m.seq_len = s;
  m.max_positions = s;
  validate(m, "test");
  return m;
}

TEST(Flops, MegatronClosedForm) {
  // Model FLOPs: 72 B s L h^2 (1 + s/(6h) + V/(12 L h)); with full recomputation the
  // hardware count is 96 B s L h^2 (1 + s/(6h) + V/(16 L h)).
  const double B = 32, s = 2048, L = 24, h = 2048, V = 51200;
  const ModelSpec m = gpt(2048, 24, 51200, 2048);
  const IterationFlops it = iteration_flops(m, parse_inline_plan("dp=8,mbs=4,gbs=32,recompute=full"));
  const double model = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h));
  const double hardware = 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h));
  std::printf("model: closed %.6e, moesim %.6e; hardware: closed %.6e, moesim %.6e\n", model, it.model, hardware,
              it.hardware);
  EXPECT_DOUBLE_EQ(it.model, model);
  EXPECT_DOUBLE_EQ(it.hardware, hardware);
}

TEST(Flops, MultiTokenPredictionAddsALayerAProjectionAndAHeadPassPerModule) {
  // Per module and sequence: one more layer (24 s h^2 + 4 s^2 h, Megatron's per-layer
  // forward), the 2h -> h projection (4 s h^2) and the shared head again (2 s h V).
  const double s = 2048, h = 2048, V = 51200;
  const ModelSpec m = gpt(2048, 24, 51200, 2048);
  for (int depth : {1, 2}) {
    ModelSpec mtp = m;
    mtp.mtp_layers = depth;
    EXPECT_DOUBLE_EQ(forward_flops(mtp).total() - forward_flops(m).total(),
                     depth * (24 * s * h * h + 4 * s * s * h + 4 * s * h * h + 2 * s * h * V));
    // Megatron-Core places the modules on the last stage: only its parameters grow, by
    // exactly the modules' (projection and layer split over tp).
    const Plan p = parse_inline_plan("tp=2,pp=2");
    const auto with = params_per_stage(mtp, p), without = params_per_stage(m, p);
    EXPECT_EQ(with[0].total, without[0].total);
    ParamBreakdown modules;
    add_mtp_modules(mtp, 2, 2, 0, modules);
    EXPECT_EQ(with[1].total - without[1].total, modules.total());
    EXPECT_EQ(modules.mtp_projection, depth * 2 * 2048 * 2048 / 2);
    // Counted apart from the model.
    EXPECT_EQ(count_params(mtp).total, count_params(m).total);
    const std::int64_t layer = attention_params(m, 1) + 2 * norm_params(m) + dense_ffn_params(m, 1);
    EXPECT_EQ(count_params(mtp).mtp_total, depth * (3 * norm_params(m) + 2 * 2048 * 2048 + layer));
  }
}

TEST(Flops, ExpertWorkFollowsRoutedTokensAndCapacity) {
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  const ForwardFlops f = forward_flops(m);
  // 12 MoE layers, 2 experts per token, 2 d f multiply-adds each, 2 FLOPs per MAC.
  EXPECT_DOUBLE_EQ(f.routed_experts, 12.0 * 2048 * 2 * 2 * (2.0 * 2048 * 8192));
  // Capacity 2 ceil(S/E) with S = 2048 x 3 = 6144 tokens over 8 experts: exact (768 x 2),
  // so no padding; with S = 2048 x 1 + an odd cf there is padding.
  const IterationFlops none = iteration_flops(m, parse_inline_plan("dp=8,ep=8,mbs=3"));
  EXPECT_DOUBLE_EQ(none.hardware, none.model);
  ModelSpec padded = m;
  padded.moe.capacity_factor = 1.25;
  const IterationFlops p = iteration_flops(padded, parse_inline_plan("dp=8,ep=8,mbs=1"));
  const double slots = 8.0 * 2 * std::ceil(1.25 * 2048 / 8);
  EXPECT_DOUBLE_EQ(p.hardware - p.model, 3 * f.routed_experts * (slots / (2 * 2048.0) - 1) * 8);
}

TEST(Capacity, FairseqAndMegatronRounding) {
  MoeSpec moe;
  moe.experts = 8;
  moe.top_k = 2;
  moe.capacity_factor = 1.0;
  moe.capacity_rounding = CapacityRounding::per_choice;
  EXPECT_EQ(expert_capacity(moe, 1001), 2 * 126);  // fairseq: 2 * ceil(1001 / 8)
  moe.capacity_rounding = CapacityRounding::total;
  EXPECT_EQ(expert_capacity(moe, 1001), 251);  // Megatron: ceil(2 * 1001 / 8)
  moe.min_capacity = 300;
  EXPECT_EQ(expert_capacity(moe, 1001), 300);
  moe.capacity_factor.reset();
  EXPECT_FALSE(expert_capacity(moe, 1001).has_value());
  EXPECT_EQ(expert_slots(moe, 1001), 2 * 1001);
}

}  // namespace
}  // namespace moesim
