// Counter-based random numbers for the gate's `sampling` (Gumbel) and `random`
// second-expert policies: a value is a pure function of (seed, stream, index), so the
// CPU reference and the CUDA kernel draw the same numbers in any order and thread layout.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/host_device.hpp"

namespace moesim::kernels {

// Streams keep the draws of different uses independent under one seed.
enum class RngStream : std::uint64_t { Gumbel = 1, SecondExpertKeep = 2, ParameterInit = 3 };

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche (Steele et al. 2014).
MOESIM_HD inline std::uint64_t mix64(std::uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

MOESIM_HD inline std::uint64_t counter_hash(std::uint64_t seed, RngStream stream,
                                            std::uint64_t index)
{
    return mix64(mix64(seed ^ (static_cast<std::uint64_t>(stream) * 0x9e3779b97f4a7c15ULL)) +
                 index);
}

// Uniform float in [0, 1) with 24 random bits: exactly representable, so CPU and GPU agree.
MOESIM_HD inline float uniform01(std::uint64_t seed, RngStream stream, std::uint64_t index)
{
    return static_cast<float>(counter_hash(seed, stream, index) >> 40) * 0x1.0p-24f;
}

// Standard Gumbel sample -log(-log(u)) with u in (0, 1) from 53 bits, computed in double
// and rounded once to float (the log of both sides then agrees to the last float bit
// except in astronomically rare rounding ties).
MOESIM_HD inline float gumbel(std::uint64_t seed, std::uint64_t index)
{
    const double u =
        (static_cast<double>(counter_hash(seed, RngStream::Gumbel, index) >> 11) + 0.5) *
        0x1.0p-53;
    return static_cast<float>(-log(-log(u)));
}

}  // namespace moesim::kernels
