// CPU reference of the MoE dispatch (permute) and combine (unpermute), forward and backward.
#include "kernels/permute.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "kernels/check.hpp"
#include "kernels/gate.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

int dispatch_rows_bound(int tokens, int experts, int k, int capacity, DispatchLayout layout)
{
    require(tokens >= 0 && experts >= 1 && k >= 1 && capacity >= 0, "dispatch_rows_bound",
            "needs tokens >= 0, experts >= 1, k >= 1, capacity >= 0");
    const long long padded = static_cast<long long>(experts) * capacity;
    const long long bound =
        layout == DispatchLayout::Padded ? padded : std::min(padded, static_cast<long long>(tokens) * k);
    require(bound <= std::numeric_limits<int>::max(), "dispatch_rows_bound",
            "the dispatch buffer would exceed 2^31 - 1 rows");
    return static_cast<int>(bound);
}

Dispatch make_dispatch(const GateResult& gate, DispatchLayout layout)
{
    return make_dispatch(gate.expert, gate.location, gate.kept, gate.tokens, gate.experts,
                         gate.k, gate.capacity, layout);
}

Dispatch make_dispatch(std::span<const int> expert, std::span<const int> location,
                       std::span<const std::uint8_t> kept, int tokens, int experts, int k,
                       int capacity, DispatchLayout layout)
{
    const char* fn = "make_dispatch";
    require(tokens >= 0 && experts >= 1 && k >= 1 && capacity >= 0, fn,
            "needs tokens >= 0, experts >= 1, k >= 1, capacity >= 0");
    const std::size_t choices = elems(tokens, k);
    require_size(expert.size(), choices, fn, "expert");
    require_size(location.size(), choices, fn, "location");
    require_size(kept.size(), choices, fn, "kept");

    Dispatch d;
    d.tokens = tokens;
    d.experts = experts;
    d.k = k;
    d.counts.assign(experts, 0);
    for (std::size_t c = 0; c < choices; ++c) {
        if (kept[c]) {
            require(expert[c] >= 0 && expert[c] < experts, fn,
                    "choice " + std::to_string(c) + " has expert " + std::to_string(expert[c]) +
                        " outside [0, " + std::to_string(experts) + ")");
            require(location[c] >= 0 && location[c] < capacity, fn,
                    "kept choice " + std::to_string(c) + " has location " +
                        std::to_string(location[c]) + " outside [0, capacity)");
            ++d.counts[expert[c]];
        }
    }
    d.offsets.assign(experts + 1, 0);
    for (int e = 0; e < experts; ++e) {
        const int width = layout == DispatchLayout::Padded ? capacity : d.counts[e];
        d.offsets[e + 1] = d.offsets[e] + width;
    }
    d.rows = d.offsets[experts];
    d.source.assign(d.rows, -1);
    d.row.assign(choices, -1);
    for (int t = 0; t < tokens; ++t) {
        for (int j = 0; j < k; ++j) {
            const std::size_t c = elems(t, k) + j;
            if (!kept[c]) {
                continue;
            }
            const int e = expert[c];
            require(location[c] < d.counts[e] || layout == DispatchLayout::Padded, fn,
                    "locations of expert " + std::to_string(e) + " are not dense 0..n-1");
            const int r = d.offsets[e] + location[c];
            require(d.source[r] < 0, fn,
                    "two choices share location " + std::to_string(location[c]) +
                        " of expert " + std::to_string(e));
            d.source[r] = t;
            d.row[c] = r;
        }
    }
    return d;
}

void permute(std::span<const float> x, int d, const Dispatch& dispatch, std::span<float> y)
{
    require(d >= 0, "permute", "d must be >= 0");
    require_size(x.size(), elems(dispatch.tokens, d), "permute", "x");
    require_size(y.size(), elems(dispatch.rows, d), "permute", "y");
    for (int r = 0; r < dispatch.rows; ++r) {
        float* dst = y.data() + elems(r, d);
        const int t = dispatch.source[r];
        if (t < 0) {
            std::fill(dst, dst + d, 0.0f);
        } else {
            std::copy_n(x.data() + elems(t, d), d, dst);
        }
    }
}

void permute_backward(std::span<const float> dy, int d, const Dispatch& dispatch,
                      std::span<float> dx)
{
    require(d >= 0, "permute_backward", "d must be >= 0");
    require_size(dy.size(), elems(dispatch.rows, d), "permute_backward", "dy");
    require_size(dx.size(), elems(dispatch.tokens, d), "permute_backward", "dx");
    const int k = dispatch.k;
    for (int t = 0; t < dispatch.tokens; ++t) {
        float* dst = dx.data() + elems(t, d);
        std::fill(dst, dst + d, 0.0f);
        for (int j = 0; j < k; ++j) {
            const int r = dispatch.row[elems(t, k) + j];
            if (r < 0) {
                continue;
            }
            const float* src = dy.data() + elems(r, d);
            for (int i = 0; i < d; ++i) {
                dst[i] += src[i];
            }
        }
    }
}

void unpermute(std::span<const float> y, int d, const Dispatch& dispatch,
               std::span<const float> weight, std::span<float> out)
{
    const int k = dispatch.k;
    require(d >= 0, "unpermute", "d must be >= 0");
    require_size(y.size(), elems(dispatch.rows, d), "unpermute", "y");
    require_size(weight.size(), elems(dispatch.tokens, k), "unpermute", "weight");
    require_size(out.size(), elems(dispatch.tokens, d), "unpermute", "out");
    for (int t = 0; t < dispatch.tokens; ++t) {
        float* dst = out.data() + elems(t, d);
        std::fill(dst, dst + d, 0.0f);
        for (int j = 0; j < k; ++j) {
            const std::size_t c = elems(t, k) + j;
            const int r = dispatch.row[c];
            if (r < 0) {
                continue;
            }
            const float w = weight[c];
            const float* src = y.data() + elems(r, d);
            for (int i = 0; i < d; ++i) {
                dst[i] += w * src[i];
            }
        }
    }
}

void unpermute_backward(std::span<const float> dout, std::span<const float> y, int d,
                        const Dispatch& dispatch, std::span<const float> weight,
                        std::span<float> dy, std::span<float> dweight)
{
    const char* fn = "unpermute_backward";
    const int k = dispatch.k;
    require(d >= 0, fn, "d must be >= 0");
    require_size(dout.size(), elems(dispatch.tokens, d), fn, "dout");
    require_size(y.size(), elems(dispatch.rows, d), fn, "y");
    require_size(weight.size(), elems(dispatch.tokens, k), fn, "weight");
    require_size(dy.size(), elems(dispatch.rows, d), fn, "dy");
    require_size(dweight.size(), elems(dispatch.tokens, k), fn, "dweight");
    std::fill(dy.begin(), dy.end(), 0.0f);
    for (int t = 0; t < dispatch.tokens; ++t) {
        const float* g = dout.data() + elems(t, d);
        for (int j = 0; j < k; ++j) {
            const std::size_t c = elems(t, k) + j;
            const int r = dispatch.row[c];
            if (r < 0) {
                dweight[c] = 0.0f;
                continue;
            }
            const float w = weight[c];
            const float* src = y.data() + elems(r, d);
            float* dst = dy.data() + elems(r, d);
            double dot = 0;
            for (int i = 0; i < d; ++i) {
                dst[i] = w * g[i];
                dot += static_cast<double>(g[i]) * src[i];
            }
            dweight[c] = static_cast<float>(dot);
        }
    }
}

}  // namespace moesim::kernels
