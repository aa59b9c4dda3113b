// Parameter counts in closed form: the whole model by kind, what one token activates,
// and what one rank holds under a plan (its tensor-, pipeline- and expert-parallel shard,
// before ZeRO/FSDP storage sharding, as fairseq's and Megatron's logs count them).
#pragma once

#include <cstdint>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

// Parameters by kind. Routed experts are the only "expert" kind: shared experts, the
// router and everything else are replicated like dense weights.
struct ParamBreakdown {
  std::int64_t embedding = 0;   // word embeddings
  std::int64_t positions = 0;   // learned position table
  std::int64_t attention = 0;   // q, k, v, o (+ biases)
  std::int64_t norms = 0;       // every norm, final norm included
  std::int64_t dense_ffn = 0;   // FFNs of non-MoE layers
  std::int64_t router = 0;      // gates of MoE layers
  std::int64_t shared_experts = 0;
  std::int64_t routed_experts = 0;
  std::int64_t output_head = 0;  // 0 when tied (the embedding is reused)
  std::int64_t mtp_projection = 0;  // multi-token prediction: each module's 2d -> d projection

  std::int64_t total() const;
  std::int64_t expert() const { return routed_experts; }
  std::int64_t non_expert() const { return total() - routed_experts; }
};

struct ParamCounts {
  ParamBreakdown by_kind;
  std::int64_t total = 0;
  std::int64_t non_expert = 0;
  std::int64_t expert = 0;
  std::int64_t per_expert = 0;  // one routed expert's FFN in one layer
  std::int64_t active = 0;      // used by one token: non-expert + top_k experts per MoE layer
  // Multi-token prediction modules (model.mtp_layers), apart from the counts above: their
  // own parameters (the embedding and output head are the model's), and what one token
  // activates of them.
  ParamBreakdown mtp;
  std::int64_t mtp_total = 0;
  std::int64_t mtp_active = 0;
};

ParamCounts count_params(const ModelSpec& model);

// What the ranks of one pipeline stage hold (all tp/dp/ep ranks of a stage hold the same
// amount). A tied embedding is held by the first stage and, when pp > 1, also by the
// last stage for the output head (Megatron keeps that copy in sync).
struct StageParams {
  int stage = 0;
  std::vector<int> layers;       // model layers on this stage
  ParamBreakdown by_kind;        // this rank's shard
  std::int64_t total = 0;
  std::int64_t expert = 0;
  std::int64_t non_expert = 0;
};

std::vector<StageParams> params_per_stage(const ModelSpec& model, const Plan& plan);
// The largest piece of stage `stage` that FSDP (ZeRO 3) gathers whole, or ZeRO 2 holds a
// whole gradient of, at one time: a layer, or the embedding (first stage) or the final
// norm and head (last stage), as the executor's units (src/executor/parameters.hpp).
// Counts only what is sharded at all: dense parameters when dp > 1, experts when the
// expert-data-parallel group has more than one rank.
std::int64_t largest_sharded_unit_params(const ModelSpec& model, const Plan& plan, const StageParams& stage);

// Adds model.mtp_layers multi-token prediction modules as a rank with the given tp, etp
// and experts_here routed experts holds them.
void add_mtp_modules(const ModelSpec& model, int tp, int etp, int experts_here, ParamBreakdown& b);

// The layers of pipeline stage `stage`: contiguous chunks of layers/(pp*vpp), stage s
// holding chunks s, s+pp, s+2pp, ... (interleaved when vpp > 1).
std::vector<int> stage_layers(const ModelSpec& model, const Plan& plan, int stage);

// Building blocks, for one layer on one tensor-parallel rank (tp = 1: the whole layer).
std::int64_t attention_params(const ModelSpec& model, int tp);
std::int64_t norm_params(const ModelSpec& model);
// An FFN of `hidden` units with the given activation (swiglu: 3 matrices) and biases.
std::int64_t ffn_params(std::int64_t d_model, std::int64_t hidden, Activation act, bool bias, int tp);
std::int64_t dense_ffn_params(const ModelSpec& model, int tp);
std::int64_t expert_ffn_params(const ModelSpec& model, int tp);  // one routed expert
std::int64_t shared_expert_params(const ModelSpec& model, int tp);  // one shared expert
std::int64_t router_params(const ModelSpec& model);

}  // namespace moesim
