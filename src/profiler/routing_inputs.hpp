// Inputs the profiler feeds every backend alike: random data (never zeros, which can run
// faster than real data) and a uniform top-k routing built by the real gate.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/gate.hpp"
#include "kernels/permute.hpp"

namespace moesim {

// n floats uniform on [-scale, scale) from `seed`.
std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float scale = 1.0f);

// The gate's decision for `tokens` tokens over random logits: top-k distinct experts each
// (fairseq's `all` second-expert policy, so every choice is routed) and no dropping.
kernels::GateResult uniform_routing(int tokens, int experts, int k, std::uint64_t seed);

// The packed dispatch of that routing.
kernels::Dispatch uniform_dispatch(int tokens, int experts, int k, std::uint64_t seed);

}  // namespace moesim
