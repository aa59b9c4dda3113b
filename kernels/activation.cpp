// CPU reference of fused bias + GELU, forward and backward.
#include "kernels/activation.hpp"

#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

void bias_gelu(std::span<const float> x, std::span<const float> bias, int rows, int cols,
               Gelu kind, std::span<float> y)
{
    require(rows >= 0 && cols >= 0, "bias_gelu", "rows and cols must be >= 0");
    require_size(x.size(), elems(rows, cols), "bias_gelu", "x");
    require_size(y.size(), elems(rows, cols), "bias_gelu", "y");
    require(bias.empty() || bias.size() == static_cast<std::size_t>(cols), "bias_gelu",
            "bias must be empty or have cols entries");
    for (int r = 0; r < rows; ++r) {
        const float* in = x.data() + elems(r, cols);
        float* out = y.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            out[c] = gelu(in[c] + (bias.empty() ? 0.0f : bias[c]), kind);
        }
    }
}

void bias_gelu_backward(std::span<const float> dy, std::span<const float> x,
                        std::span<const float> bias, int rows, int cols, Gelu kind,
                        std::span<float> dx, std::span<float> dbias)
{
    const char* fn = "bias_gelu_backward";
    require(rows >= 0 && cols >= 0, fn, "rows and cols must be >= 0");
    require_size(dy.size(), elems(rows, cols), fn, "dy");
    require_size(x.size(), elems(rows, cols), fn, "x");
    require_size(dx.size(), elems(rows, cols), fn, "dx");
    require(bias.empty() || bias.size() == static_cast<std::size_t>(cols), fn,
            "bias must be empty or have cols entries");
    require(dbias.empty() || dbias.size() == static_cast<std::size_t>(cols), fn,
            "dbias must be empty or have cols entries");
    std::vector<double> acc(dbias.empty() ? 0 : cols, 0.0);
    for (int r = 0; r < rows; ++r) {
        const float* g = dy.data() + elems(r, cols);
        const float* in = x.data() + elems(r, cols);
        float* out = dx.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            out[c] = g[c] * gelu_grad(in[c] + (bias.empty() ? 0.0f : bias[c]), kind);
            if (!acc.empty()) {
                acc[c] += out[c];
            }
        }
    }
    for (std::size_t c = 0; c < acc.size(); ++c) {
        dbias[c] = static_cast<float>(acc[c]);
    }
}

}  // namespace moesim::kernels
