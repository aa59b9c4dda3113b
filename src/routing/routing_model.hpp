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
enum class RoutingKind { uniform, zipf, trace, balanced };

struct RoutingSpec {
  RoutingKind kind = RoutingKind::uniform;
  double zipf_s = 0;      // zipf: expert i (in a seeded random order) is a first choice with weight (i+1)^-s
  std::string trace;      // trace: the file
  std::uint64_t seed = 1;
};

// "uniform", "balanced", "zipf:S" (S >= 0) or "trace:FILE"; bad text is an InputError on
// --routing.
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
