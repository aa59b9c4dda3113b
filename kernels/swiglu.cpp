// CPU reference of SwiGLU, forward and backward: one pass over the rows.
#include "kernels/swiglu.hpp"

#include <cstddef>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

void swiglu_forward(std::span<const float> x, int rows, int f, std::span<float> y)
{
    const char* fn = "swiglu_forward";
    require(rows >= 0 && f >= 0, fn, "rows and f must be >= 0");
    require_size(x.size(), elems(rows, 2 * f), fn, "x");
    require_size(y.size(), elems(rows, f), fn, "y");
    for (int r = 0; r < rows; ++r) {
        const float* a = x.data() + elems(r, 2 * f);
        const float* b = a + f;
        float* out = y.data() + elems(r, f);
        for (int c = 0; c < f; ++c) {
            out[c] = silu(a[c]) * b[c];
        }
    }
}

void swiglu_backward(std::span<const float> dy, std::span<const float> x, int rows, int f,
                     std::span<float> dx)
{
    const char* fn = "swiglu_backward";
    require(rows >= 0 && f >= 0, fn, "rows and f must be >= 0");
    require_size(dy.size(), elems(rows, f), fn, "dy");
    require_size(x.size(), elems(rows, 2 * f), fn, "x");
    require_size(dx.size(), elems(rows, 2 * f), fn, "dx");
    for (int r = 0; r < rows; ++r) {
        const float* g = dy.data() + elems(r, f);
        const float* a = x.data() + elems(r, 2 * f);
        const float* b = a + f;
        float* da = dx.data() + elems(r, 2 * f);
        float* db = da + f;
        for (int c = 0; c < f; ++c) {
            // Both reads before either write: dx may alias x.
            const float av = a[c];
            const float bv = b[c];
            da[c] = g[c] * bv * silu_grad(av);
            db[c] = g[c] * silu(av);
        }
    }
}

}  // namespace moesim::kernels
