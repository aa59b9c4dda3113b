// Tests of the grouped GEMM and the expert FFNs: per-group results equal separate GEMMs,
// empty groups, weight gradients, and the FFN's backward against finite differences.
#include "kernels/grouped_gemm.hpp"

#include <gtest/gtest.h>

#include "kernels/expert_ffn.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

TEST(GroupedGemm, EachGroupIsItsOwnGemm)
{
    // Groups with 3, 0 and 4 rows, and a last row (7) outside every group.
    const std::vector<int> offsets = {0, 3, 3}, counts = {3, 0, 4};
    const GroupRows groups{offsets, counts, 8};
    const int k = 5, n = 6;
    const auto x = random_vector(8 * k, 1);
    for (Trans tw : {Trans::Yes, Trans::No}) {
        const auto w = random_vector(3 * n * k, 2);
        std::vector<float> y(8 * n, -1.0f);
        grouped_gemm(groups, x, k, w, tw, n, 0.0f, y);
        for (int g = 0; g < 3; ++g) {
            const std::size_t ws = static_cast<std::size_t>(n) * k;
            std::vector<float> expect(static_cast<std::size_t>(counts[g]) * n);
            gemm(Trans::No, tw, counts[g], n, k, 1.0f,
                 std::span<const float>(x).subspan(static_cast<std::size_t>(offsets[g]) * k,
                                                   static_cast<std::size_t>(counts[g]) * k),
                 std::span<const float>(w).subspan(g * ws, ws), 0.0f, expect);
            for (std::size_t i = 0; i < expect.size(); ++i) {
                EXPECT_EQ(y[offsets[g] * n + i], expect[i]);
            }
        }
        for (int j = 0; j < n; ++j) {
            EXPECT_EQ(y[7 * n + j], -1.0f) << "row outside the groups was written";
        }
        // Weight gradient: <dy, x op(w)> is linear in w, so <dw, w> = <dy, y>.
        const auto dy = random_vector(8 * n, 3);
        std::vector<float> dw(w.size(), 9.0f);
        std::vector<float> dy_in = dy;
        for (int j = 0; j < n; ++j) {
            dy_in[7 * n + j] = 0.0f;
        }
        grouped_gemm_weight_grad(groups, dy_in, n, x, k, tw, 0.0f, dw);
        EXPECT_NEAR(test::dot(dw, w), test::dot(dy_in, y), 1e-4);
        for (int i = 0; i < n * k; ++i) {
            EXPECT_EQ(dw[n * k + i], 0.0f) << "an empty group's gradient is zero";
        }
    }
}

TEST(ExpertFfn, ForwardMatchesPerRowComputationAndBackwardMatchesFiniteDifferences)
{
    const ExpertFfnShape shape{3, 4, 6, Gelu::Erf};
    const std::vector<int> offsets = {0, 2, 2, 5}, counts = {2, 0, 3};
    const int rows = 5, d = 4, f = 6;
    const GroupRows groups{offsets, counts, rows};
    auto x = random_vector(rows * d, 1);
    auto w1 = random_vector(3 * f * d, 2), b1 = random_vector(3 * f, 3);
    auto w2 = random_vector(3 * d * f, 4), b2 = random_vector(3 * d, 5);
    std::vector<float> pre(rows * f), act(rows * f), y(rows * d);
    const auto forward = [&] {
        expert_ffn_forward(shape, groups, x, {w1, b1, w2, b2}, pre, act, y);
    };
    forward();
    // Row r of expert e by hand.
    for (int r = 0; r < rows; ++r) {
        const int e = r < 2 ? 0 : 2;
        std::vector<double> h(f);
        for (int i = 0; i < f; ++i) {
            double s = b1[e * f + i];
            for (int j = 0; j < d; ++j) {
                s += static_cast<double>(x[r * d + j]) * w1[(e * f + i) * d + j];
            }
            h[i] = gelu(static_cast<float>(s), Gelu::Erf);
        }
        for (int j = 0; j < d; ++j) {
            double s = b2[e * d + j];
            for (int i = 0; i < f; ++i) {
                s += h[i] * w2[(e * d + j) * f + i];
            }
            EXPECT_NEAR(y[r * d + j], s, 1e-5);
        }
    }
    const auto dy = random_vector(rows * d, 6);
    const auto loss = [&] {
        forward();
        return test::dot(dy, y);
    };
    std::vector<float> dx(x.size()), dw1(w1.size()), db1(b1.size()), dw2(w2.size()), db2(b2.size());
    expert_ffn_backward(shape, groups, dy, x, {w1, b1, w2, b2}, pre, act, dx, {dw1, db1, dw2, db2});
    for (std::size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(dx[i], test::finite_difference(x, i, loss), 2e-3) << "x " << i;
    }
    for (std::size_t i = 0; i < w1.size(); i += 5) {
        EXPECT_NEAR(dw1[i], test::finite_difference(w1, i, loss), 2e-3) << "w1 " << i;
    }
    for (std::size_t i = 0; i < b1.size(); ++i) {
        EXPECT_NEAR(db1[i], test::finite_difference(b1, i, loss), 2e-3) << "b1 " << i;
    }
    for (std::size_t i = 0; i < w2.size(); i += 5) {
        EXPECT_NEAR(dw2[i], test::finite_difference(w2, i, loss), 2e-3) << "w2 " << i;
    }
    for (std::size_t i = 0; i < b2.size(); ++i) {
        EXPECT_NEAR(db2[i], test::finite_difference(b2, i, loss), 2e-3) << "b2 " << i;
    }
}

}  // namespace
}  // namespace moesim::kernels
