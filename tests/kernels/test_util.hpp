// Helpers shared by the kernels' tests: seeded random buffers, a central finite
// difference, and dot products in double.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

namespace moesim::kernels::test {

inline std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float lo = -1.0f,
                                        float hi = 1.0f)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) {
        x = dist(rng);
    }
    return v;
}

inline double dot(std::span<const float> a, std::span<const float> b)
{
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        s += static_cast<double>(a[i]) * b[i];
    }
    return s;
}

// d loss / d v[i] by central difference, v restored afterwards.
inline double finite_difference(std::vector<float>& v, std::size_t i,
                                const std::function<double()>& loss, float h = 1e-3f)
{
    const float saved = v[i];
    v[i] = saved + h;
    const double up = loss();
    v[i] = saved - h;
    const double down = loss();
    v[i] = saved;
    return (up - down) / (2.0 * static_cast<double>(h));
}

}  // namespace moesim::kernels::test
