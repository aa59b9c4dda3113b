// EvoMoE's dense-to-sparse gate over training (arXiv 2112.14397): how many experts a token
// activates at a given update, and the model as it runs then, so that the cost, memory and
// balance models follow the schedule instead of its final top-k.
#pragma once

#include <cstdint>
#include <string>

#include "src/model/model_spec.hpp"
#include "src/routing/routing_model.hpp"

namespace moesim {

enum class DtsPhase { dense, annealing, sparse };

// The phase of update `step` (0-based: the updates done before it) and the gate's softmax
// temperature then: temperature_start while dense, linear from temperature_start to
// temperature_end over annealing (the config's law; EvoMoE's paper does not fix it),
// temperature_end once sparse. Shared by the simulator (gate_at_step) and the executor's
// gate (src/executor), so that both follow one schedule.
DtsPhase dts_phase(const DenseToSparse& d, std::int64_t step);
double dts_temperature(const DenseToSparse& d, std::int64_t step);

struct GateAtStep {
  std::string phase;         // "dense", "annealing" or "sparse"
  double temperature = 0;    // the gate's softmax temperature (annealing), else its end points
  double active_experts = 0; // mean experts per token whose gate weight passes the threshold
  int top_k = 0;             // what the model runs with: rounded, at least the final top_k
};

// Dense for the first dense_steps updates (every expert, top_k = E); then, over
// anneal_steps, the temperature falls linearly from temperature_start to
// temperature_end (the config's schedule; EvoMoE's paper does not fix the law) and a
// token activates the experts whose softmax(logits / temperature) weight exceeds the
// threshold, at least the final top_k. The logits are the routing model's (log weight +
// Gumbel noise, the same draw as route_tokens) over kGateSampleTokens tokens. From
// dense_steps + anneal_steps on: the final top_k. Models without the schedule are
// always "sparse".
GateAtStep gate_at_step(const ModelSpec& model, const RoutingSpec& routing, std::int64_t step);

// `model` with the top-k of gate_at_step: capacities, FLOPs, memory and routing follow.
ModelSpec model_at_step(const ModelSpec& model, const RoutingSpec& routing, std::int64_t step);

inline constexpr std::int64_t kGateSampleTokens = 4096;

}  // namespace moesim
