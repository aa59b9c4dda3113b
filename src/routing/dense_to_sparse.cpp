// EvoMoE's gate schedule; see dense_to_sparse.hpp.
#include "src/routing/dense_to_sparse.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/counter_rng.hpp"

namespace moesim {

DtsPhase dts_phase(const DenseToSparse& d, std::int64_t step) {
  if (step < d.dense_steps) return DtsPhase::dense;
  if (step >= d.dense_steps + d.anneal_steps) return DtsPhase::sparse;
  return DtsPhase::annealing;
}

double dts_temperature(const DenseToSparse& d, std::int64_t step) {
  switch (dts_phase(d, step)) {
    case DtsPhase::dense: return d.temperature_start;
    case DtsPhase::sparse: return d.temperature_end;
    case DtsPhase::annealing: break;
  }
  const double progress = static_cast<double>(step - d.dense_steps) / static_cast<double>(d.anneal_steps);
  return d.temperature_start + (d.temperature_end - d.temperature_start) * progress;
}

GateAtStep gate_at_step(const ModelSpec& m, const RoutingSpec& routing, std::int64_t step) {
  GateAtStep g;
  g.top_k = m.moe.top_k;
  g.active_experts = m.moe.top_k;
  g.phase = "sparse";
  if (!m.is_moe() || !m.moe.dense_to_sparse) return g;
  const DenseToSparse& d = *m.moe.dense_to_sparse;
  const int E = m.moe.experts;
  const DtsPhase phase = dts_phase(d, step);
  g.temperature = dts_temperature(d, step);
  if (phase == DtsPhase::dense) {
    g.phase = "dense";
    g.top_k = E;
    g.active_experts = E;
    return g;
  }
  if (phase == DtsPhase::sparse) return g;
  g.phase = "annealing";
  // Experts over the threshold per token, on the routing model's logits.
  std::vector<double> log_w = expert_weights(routing, E);
  for (double& x : log_w) x = std::log(x);
  std::vector<double> z(static_cast<std::size_t>(E));
  double active = 0;
  for (std::int64_t t = 0; t < kGateSampleTokens; ++t) {
    double top = -INFINITY;
    for (int e = 0; e < E; ++e) {
      const auto i = static_cast<std::size_t>(t) * static_cast<std::size_t>(E) + static_cast<std::size_t>(e);
      z[static_cast<std::size_t>(e)] = (log_w[static_cast<std::size_t>(e)] + kernels::gumbel(routing.seed, i)) / g.temperature;
      top = std::max(top, z[static_cast<std::size_t>(e)]);
    }
    double sum = 0;
    for (double& x : z) sum += (x = std::exp(x - top));
    int over = 0;
    for (double x : z) over += x / sum > d.threshold;
    active += std::max(over, m.moe.top_k);
  }
  g.active_experts = active / static_cast<double>(kGateSampleTokens);
  g.top_k = std::clamp(static_cast<int>(std::lround(g.active_experts)), m.moe.top_k, E);
  return g;
}

ModelSpec model_at_step(const ModelSpec& m, const RoutingSpec& routing, std::int64_t step) {
  ModelSpec at = m;
  if (m.is_moe()) at.moe.top_k = gate_at_step(m, routing, step).top_k;
  return at;
}

}  // namespace moesim
