// CPU reference of the rotary position embedding: a cos/sin table per (position, pair)
// built once per call in double, then every head of every row rotated in place.
#include "kernels/rotary.hpp"

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::require;

namespace detail {

void check_rotary_shape(const RotaryShape& s, int ld, const char* function)
{
    require(s.rows >= 0 && s.seq >= 1, function, "needs rows >= 0 and seq >= 1");
    require(s.rows % s.seq == 0, function,
            "rows (" + std::to_string(s.rows) + ") must be a multiple of seq (" + std::to_string(s.seq) +
                "): rows are whole sequences, batch-major");
    require(s.heads >= 1, function, "needs heads >= 1");
    require(s.head_dim >= 2 && s.head_dim % 2 == 0, function,
            "head_dim must be even and >= 2 (got " + std::to_string(s.head_dim) + ")");
    require(std::isfinite(s.theta) && s.theta > 0.0, function,
            "theta must be finite and > 0 (got " + std::to_string(s.theta) + ")");
    const int width = s.heads * s.head_dim;
    require(ld >= width, function,
            "row stride " + std::to_string(ld) + " is below heads * head_dim = " + std::to_string(width));
}

}  // namespace detail

namespace {

// sign = +1 rotates by the angle (forward), -1 by its negative (backward, the transpose).
void rotate(const RotaryShape& s, std::span<float> x, int ld, double sign, const char* fn)
{
    detail::check_rotary_shape(s, ld, fn);
    const int width = s.heads * s.head_dim;
    const std::size_t needed =
        s.rows == 0 ? 0 : static_cast<std::size_t>(s.rows - 1) * static_cast<std::size_t>(ld) + width;
    require(x.size() >= needed, fn,
            "x has " + std::to_string(x.size()) + " elements, needs at least " + std::to_string(needed) + " (" +
                std::to_string(s.rows) + " rows of " + std::to_string(width) + " columns, row stride " +
                std::to_string(ld) + ")");
    if (s.rows == 0) {
        return;
    }
    // One table for all rows and heads: seq * head_dim / 2 angles instead of one per element.
    const int half = s.head_dim / 2;
    const std::size_t table = static_cast<std::size_t>(s.seq) * half;
    std::vector<double> cosines(table), sines(table);
    for (int p = 0; p < s.seq; ++p) {
        for (int i = 0; i < half; ++i) {
            const double angle = rotary_angle(p, i, s.head_dim, s.theta);
            cosines[static_cast<std::size_t>(p) * half + i] = std::cos(angle);
            sines[static_cast<std::size_t>(p) * half + i] = sign * std::sin(angle);
        }
    }
    for (int r = 0; r < s.rows; ++r) {
        const std::size_t at = static_cast<std::size_t>(r % s.seq) * half;
        float* row = x.data() + static_cast<std::size_t>(r) * ld;
        for (int h = 0; h < s.heads; ++h) {
            float* head = row + static_cast<std::size_t>(h) * s.head_dim;
            for (int i = 0; i < half; ++i) {
                rotary_rotate_pair(head[i], head[i + half], cosines[at + i], sines[at + i]);
            }
        }
    }
}

}  // namespace

void rotary_forward(const RotaryShape& shape, std::span<float> x, int ld)
{
    rotate(shape, x, ld, 1.0, "rotary_forward");
}

void rotary_backward(const RotaryShape& shape, std::span<float> dx, int ld)
{
    rotate(shape, dx, ld, -1.0, "rotary_backward");
}

}  // namespace moesim::kernels
