// CPU grouped GEMM: a loop of Eigen GEMMs over the groups' row ranges.
#include "kernels/grouped_gemm.hpp"

#include <string>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {

void check_groups(const GroupRows& g, const char* fn)
{
    require(g.offsets.size() >= g.counts.size(), fn, "offsets has fewer entries than counts");
    require(g.rows >= 0, fn, "rows must be >= 0");
    for (std::size_t i = 0; i < g.counts.size(); ++i) {
        require(g.counts[i] >= 0 && g.offsets[i] >= 0 && g.offsets[i] + g.counts[i] <= g.rows,
                fn, "group " + std::to_string(i) + " lies outside the buffer's rows");
    }
}

}  // namespace

void grouped_gemm(const GroupRows& groups, std::span<const float> x, int k,
                  std::span<const float> w, Trans trans_w, int n, float beta, std::span<float> y,
                  GemmPrecision precision)
{
    const char* fn = "grouped_gemm";
    check_groups(groups, fn);
    const std::size_t g_count = groups.counts.size();
    const std::size_t w_size = elems(n, k);
    require_size(x.size(), elems(groups.rows, k), fn, "x");
    require_size(w.size(), g_count * w_size, fn, "w");
    require_size(y.size(), elems(groups.rows, n), fn, "y");
    for (std::size_t g = 0; g < g_count; ++g) {
        const int m = groups.counts[g];
        const std::size_t row0 = static_cast<std::size_t>(groups.offsets[g]);
        gemm(Trans::No, trans_w, m, n, k, 1.0f, x.subspan(row0 * k, elems(m, k)),
             w.subspan(g * w_size, w_size), beta, y.subspan(row0 * n, elems(m, n)), precision);
    }
}

void grouped_gemm_weight_grad(const GroupRows& groups, std::span<const float> dy, int n,
                              std::span<const float> x, int k, Trans trans_w, float beta,
                              std::span<float> dw, GemmPrecision precision)
{
    const char* fn = "grouped_gemm_weight_grad";
    check_groups(groups, fn);
    const std::size_t g_count = groups.counts.size();
    const std::size_t w_size = elems(n, k);
    require_size(dy.size(), elems(groups.rows, n), fn, "dy");
    require_size(x.size(), elems(groups.rows, k), fn, "x");
    require_size(dw.size(), g_count * w_size, fn, "dw");
    for (std::size_t g = 0; g < g_count; ++g) {
        const int m = groups.counts[g];
        const std::size_t row0 = static_cast<std::size_t>(groups.offsets[g]);
        const auto dy_g = dy.subspan(row0 * n, elems(m, n));
        const auto x_g = x.subspan(row0 * k, elems(m, k));
        const auto dw_g = dw.subspan(g * w_size, w_size);
        if (trans_w == Trans::Yes) {
            gemm(Trans::Yes, Trans::No, n, k, m, 1.0f, dy_g, x_g, beta, dw_g, precision);
        } else {
            gemm(Trans::Yes, Trans::No, k, n, m, 1.0f, x_g, dy_g, beta, dw_g, precision);
        }
    }
}

}  // namespace moesim::kernels
