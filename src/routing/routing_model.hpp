// Routing models: how one micro-batch of one rank's tokens spreads over the experts of a
// MoE layer (uniform, skewed after Zipf, or a recorded trace), what capacity drops, and
// the balance figures under fairseq's names. The most-loaded rank then gates the expert
// GEMMs and the all-to-all of dropless plans.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/gate.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

// balanced: every expert gets exactly its share, as Megatron's
// --moe-router-force-load-balancing makes published benchmarks route.
// aux_free: a Zipf-skewed router balanced by DeepSeek-V3's auxiliary-loss-free bias
// (below).
enum class RoutingKind { uniform, zipf, trace, balanced, aux_free };

struct RoutingSpec {
  RoutingKind kind = RoutingKind::uniform;
  double zipf_s = 0;      // zipf: expert i (in a seeded random order) is a first choice with weight (i+1)^-s
  std::string trace;      // trace: the file
  std::uint64_t seed = 1;
};

// "uniform", "balanced", "zipf:S" (S >= 0), "aux_free:S" (S >= 0) or "trace:FILE"; bad
// text is an InputError on --routing.
RoutingSpec parse_routing(const std::string& text);
std::string to_string(const RoutingSpec& r);

// First-choice weights of the experts under a synthetic routing: uniform (also for
// traces), or Zipf over a seeded random order of the experts (so the hot experts are not
// always the first ones, which would put them all on rank 0).
std::vector<double> expert_weights(const RoutingSpec& routing, int experts);

// One micro-batch of `tokens` tokens of one rank through one MoE layer.
struct ExpertLoad {
  std::int64_t tokens = 0;
  int experts = 0;
  int top_k = 0;
  std::optional<std::int64_t> capacity;  // per expert; nullopt when dropless
  std::vector<double> demand;            // choices routed to each expert, kept or dropped
  std::vector<double> kept;              // of those, within capacity
  kernels::GateStats stats;              // fairseq's balance metrics
  bool has_entropy = true;               // false for traces that did not record it
};

// Routes `tokens` tokens of `model` (an MoE model) by `routing`. Synthetic routings draw
// router logits log(w_e) + Gumbel noise, so the first choice follows w exactly (the
// Gumbel-max trick), and run the real gate (kernels/gate: fairseq's top-1/top-2 with its
// second-expert policy and capacity; k > 2 routes top-k in token order). A trace gives
// per-expert first and second choices, scaled to `tokens`. Balanced routing gives every
// expert tokens * k / E choices (the remainder to the first experts), uniform router
// probabilities, and drops only what exceeds the capacity.
ExpertLoad route_tokens(const ModelSpec& model, const RoutingSpec& routing, std::int64_t tokens);

// Group-limited routing (moe.expert_groups, moe.groups_per_token) on tokens' selection
// keys, E per token: each token keeps the keys of its groups_per_token groups with the
// largest sum of their two best keys (DeepSeek-V3's rule; ties to the lower group); the
// others become -infinity, so no top-k picks them. Nothing without groups.
void limit_groups(const MoeSpec& moe, std::vector<float>& keys);

// DeepSeek-V3's auxiliary-loss-free balancing (technical report, section 2.1.2): experts
// are chosen by the top-k of score + bias (the score, sigmoid or softmax of the logit as
// the model's router has it, still weighs the output), and after each step every expert's
// bias moves by gamma towards balance: minus gamma if it was overloaded, plus gamma if
// underloaded. gamma = 0.001, the report's bias update speed (section 4.2).
inline constexpr double kAuxFreeBiasSpeed = 0.001;
// Scores lie in (0, 1), so 1 / gamma updates let a bias cross their whole range: after
// that many the bias has had time to reach its steady state from zero.
inline constexpr int kAuxFreeUpdates = 1000;
// Tokens routed per bias update, cycling over this many draws.
inline constexpr std::int64_t kAuxFreeTokensPerUpdate = 1024;
inline constexpr int kAuxFreeDraws = 8;
// The biases after kAuxFreeUpdates updates of a router skewed as `routing`'s Zipf.
std::vector<double> aux_free_bias(const ModelSpec& model, const RoutingSpec& routing);

// Expert-parallel ranks each hold `experts / ep` experts (a contiguous block, or every
// ep-th expert under round_robin) and receive the tokens of all `ep` ranks, routed alike
// (so a hot expert is hot on every rank). Placement matters only when the load is skewed.
struct RankLoad {
  double max_tokens = 0;   // kept token slots of the most-loaded rank
  double mean_tokens = 0;
  int max_rank = 0;
};
RankLoad rank_load(const ExpertLoad& load, int ep, ExpertPlacement placement = ExpertPlacement::contiguous);

}  // namespace moesim
