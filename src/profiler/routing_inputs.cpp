// Random inputs and routing for the profiler; see routing_inputs.hpp.
#include "src/profiler/routing_inputs.hpp"


namespace moesim {

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float scale) {
  // Uniform on [-scale, scale) from a splitmix64 stream: a nanosecond a value, since the
  // GPU grid fills gigabytes of operands, and timings need no particular distribution,
  // only data that is not zero.
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  std::vector<float> v(n);
  for (float& x : v) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    x = scale * (static_cast<float>(z >> 40) * 0x1.0p-23f - 1.0f);
  }
  return v;
}

kernels::GateResult uniform_routing(int tokens, int experts, int k, std::uint64_t seed) {
  const std::vector<float> logits = random_floats(static_cast<std::size_t>(tokens) * experts, seed);
  kernels::GateOptions options;
  options.k = k;
  options.capacity = tokens;  // >= tokens: dropless
  options.second_policy = kernels::SecondExpertPolicy::All;
  options.seed = seed;
  return kernels::gate_forward(logits, tokens, experts, options);
}

kernels::Dispatch uniform_dispatch(int tokens, int experts, int k, std::uint64_t seed) {
  return kernels::make_dispatch(uniform_routing(tokens, experts, k, seed), kernels::DispatchLayout::Packed);
}

}  // namespace moesim
