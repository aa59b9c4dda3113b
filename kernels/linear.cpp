// CPU dense layer on top of gemm().
#include "kernels/linear.hpp"

#include <vector>

#include "kernels/check.hpp"
#include "kernels/gemm.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

void linear_forward(std::span<const float> x, std::span<const float> w, std::span<const float> b,
                    int rows, int in, int out, std::span<float> y, GemmPrecision precision)
{
    require(b.empty() || b.size() == static_cast<std::size_t>(out), "linear_forward",
            "b must be empty or have `out` entries");
    gemm(Trans::No, Trans::Yes, rows, out, in, 1.0f, x, w, 0.0f, y, precision);
    if (!b.empty()) {
        for (int r = 0; r < rows; ++r) {
            float* row = y.data() + elems(r, out);
            for (int c = 0; c < out; ++c) {
                row[c] += b[c];
            }
        }
    }
}

void linear_backward(std::span<const float> dy, std::span<const float> x,
                     std::span<const float> w, int rows, int in, int out, std::span<float> dx,
                     std::span<float> dw, std::span<float> db, bool accumulate, GemmPrecision precision)
{
    const char* fn = "linear_backward";
    require_size(dy.size(), elems(rows, out), fn, "dy");
    require(db.empty() || db.size() == static_cast<std::size_t>(out), fn,
            "db must be empty or have `out` entries");
    if (!dx.empty()) {
        gemm(Trans::No, Trans::No, rows, in, out, 1.0f, dy, w, 0.0f, dx, precision);
    }
    if (!dw.empty()) {
        gemm(Trans::Yes, Trans::No, out, in, rows, 1.0f, dy, x, accumulate ? 1.0f : 0.0f, dw, precision);
    }
    if (!db.empty()) {
        std::vector<double> acc(out, 0.0);
        for (int r = 0; r < rows; ++r) {
            const float* row = dy.data() + elems(r, out);
            for (int c = 0; c < out; ++c) {
                acc[c] += row[c];
            }
        }
        for (int c = 0; c < out; ++c) {
            db[c] = static_cast<float>(acc[c]) + (accumulate ? db[c] : 0.0f);
        }
    }
}

}  // namespace moesim::kernels
