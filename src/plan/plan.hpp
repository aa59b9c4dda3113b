// Plan: how a model is split over GPUs (dp, tp, pp, cp, ep, etp), batched, sharded
// (ZeRO/FSDP), scheduled and recomputed. From a JSON file or inline ("dp=2,tp=2,pp=2,ep=4,mbs=1,gbs=64");
// check_plan() validates it against a model and a cluster.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"

namespace moesim {

enum class Recompute { none, selective, full };
enum class Schedule { gpipe, one_f_one_b, interleaved };
enum class AttentionImpl { unfused, flash };  // unfused stores the s x s scores for backward
enum class ExpertPlacement { contiguous, round_robin };

enum class Fp8 { none, e4m3, hybrid };
// How FP8 tensors are scaled (Megatron's --fp8-recipe): one scale per tensor, from past
// amax values (delayed) or the current one (tensorwise), or one per 1x128 tile of
// activations and 128x128 block of weights (blockwise, DeepSeek-V3's).
enum class Fp8Recipe { delayed, tensorwise, blockwise };

struct Plan {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int ep = 1;     // expert-parallel group, carved out of the data-parallel group
  // Context parallelism (Megatron's --context-parallel-size): each rank of a cp group holds
  // 1/cp of every sequence (two chunks, for causal balance) and runs ring attention over
  // the group's keys and values. Dense weights are replicated over dp x cp.
  int cp = 1;
  // Expert tensor parallelism (Megatron's --expert-tensor-parallel-size; 0: tp). The MoE
  // layers refold a stage's tp x cp x dp ranks as etp x ep x edp ("MoE parallel
  // folding"): experts split etp ways, ep groups may span tensor- and context-parallel
  // ranks, and each rank carries tokens of 1/(tp cp / etp) of its attention group.
  int etp = 0;
  int mbs = 1;    // micro-batch size, sequences
  std::int64_t gbs = 0;  // global batch, sequences; 0 = dp * mbs
  int zero = 0;   // 0 none, 1 optimizer, 2 + gradients, 3 + weights (FSDP)
  Recompute recompute = Recompute::none;
  Schedule schedule = Schedule::one_f_one_b;
  int vpp = 1;    // virtual stages per pipeline rank (interleaved)
  DType precision = DType::fp32;
  bool master_weights = true;         // fp32 master copy under fp16/bf16
  DType optimizer_dtype = DType::fp32;  // Adam moments (fairseq --fp16-adam-stats: fp16)
  // Gradients as stored and reduced: the precision's (unset), or fp32 (Megatron's
  // --accumulate-allreduce-grads-in-fp32, the default of its bf16 recipes).
  std::optional<DType> grad_dtype;
  DType grads() const { return grad_dtype.value_or(precision); }
  AttentionImpl attention = AttentionImpl::unfused;
  ExpertPlacement placement = ExpertPlacement::contiguous;
  // Megatron's sequence parallelism (needs tp > 1): the norms, dropouts and residuals that
  // tensor parallelism replicates run on 1/tp of the tokens; the all-reduces become an
  // all-gather and a reduce-scatter of the same volume.
  bool sp = false;
  // Transformer Engine FP8 GEMMs for the linear layers (Megatron's --fp8-format): e4m3
  // throughout, or hybrid (e4m3 forward, e5m2 gradients). Weights, attention's batched
  // GEMMs, the router and the output head stay in `precision`. Needs an FP8 GPU (Hopper).
  Fp8 fp8 = Fp8::none;
  Fp8Recipe fp8_recipe = Fp8Recipe::delayed;
  // The MoE dispatch all-to-all in FP8 (DeepSeek-V3's and DeepEP's): the forward dispatch
  // carries one byte an element plus an fp32 scale per 1x128 tile; the combine and the
  // backward all-to-alls stay in `precision`. Needs fp8.
  bool fp8_dispatch = false;
  // Megatron's --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers:
  // the layers of the first and last pipeline stage (0: an even share), for models whose
  // layers do not split evenly or whose embedding and head make the end stages heavy. The
  // stages between split the rest evenly; with the interleaved schedule each stage splits
  // its layers evenly over its vpp virtual stages (Megatron-Core).
  int first_stage_layers = 0;
  int last_stage_layers = 0;

  int world() const { return dp * tp * pp * cp; }
  int expert_tp() const { return etp > 0 ? etp : tp; }
  // Ranks holding the same shard of the dense weights: their gradients reduce over dp x cp.
  int dense_replicas() const { return dp * cp; }
  // Expert-data-parallel group: replicas of each expert shard.
  int edp() const { return dp * cp * tp / (expert_tp() * ep); }
  std::int64_t global_batch() const { return gbs > 0 ? gbs : static_cast<std::int64_t>(dp) * mbs; }
  std::int64_t micro_batches() const { return global_batch() / (static_cast<std::int64_t>(dp) * mbs); }

  bool operator==(const Plan&) const = default;
};

// Tokens of one micro-batch one rank carries through attention and the dense layers
// (the sequence split over cp), and through the routed experts (after the MoE layers'
// refolding; equal to the former when etp = tp).
double attention_tokens(const Plan& plan, const ModelSpec& model);
double expert_layer_tokens(const Plan& plan, const ModelSpec& model);
// The tokens whose routing one rank computes per micro-batch (its routing sample's size).
std::int64_t routed_tokens(const Plan& plan, const ModelSpec& model);

// Inline form: comma-separated key=value with the keys of the file form.
Plan parse_inline_plan(const std::string& text);
Plan plan_from_json(const nlohmann::json& doc, const std::string& file);
// `plan` with one field set from its inline text ("zero", "3"); type and range are
// checked, the rules relating fields are not. Setting precision resets master_weights to
// the file form's default for it.
Plan with_field(const Plan& plan, const std::string& key, std::string_view value, const std::string& source);
// A path to an existing file is read as JSON; anything with '=' is parsed inline.
Plan load_plan(const std::string& file_or_inline);
nlohmann::ordered_json plan_to_json(const Plan& plan);
std::string plan_to_inline(const Plan& plan);

// The rules a plan obeys on its own (ep divides dp, gbs a multiple of dp*mbs, vpp only
// with the interleaved schedule, ...); plan_from_json applies them to every plan it reads.
void check_plan_rules(const Plan& plan, const std::string& source);
// Rejects a plan that does not divide the model or does not fit the cluster, naming
// the plan field and the reason. `source` names the plan in messages.
void check_plan(const Plan& plan, const ModelSpec& model, const std::string& source);
void check_plan(const Plan& plan, const ClusterSpec& cluster, const std::string& source);

const char* to_string(Recompute r);
const char* to_string(Schedule s);
const char* to_string(Fp8 f);
const char* to_string(Fp8Recipe r);
const char* to_string(AttentionImpl a);
const char* to_string(ExpertPlacement p);

}  // namespace moesim
