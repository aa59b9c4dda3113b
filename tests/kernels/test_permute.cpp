// Tests of dispatch (permute) and combine (unpermute): identities, transposes, layouts.
#include "kernels/permute.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>

#include "kernels/gate.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::dot;
using test::random_vector;

GateResult route(int tokens, int experts, int k, int capacity, std::uint64_t seed)
{
    GateOptions o;
    o.k = k;
    o.capacity = capacity;
    o.second_policy = SecondExpertPolicy::All;
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, seed, -2, 2);
    return gate_forward(logits, tokens, experts, o);
}

struct Shape {
    int tokens, experts, k, capacity, d;
};
const Shape kShapes[] = {
    {0, 3, 1, 0, 4},    // no tokens
    {9, 1, 1, 9, 3},    // one expert, dropless
    {9, 1, 1, 4, 3},    // one expert, overflow
    {20, 4, 2, 40, 5},  // top-2, dropless
    {20, 4, 2, 6, 5},   // top-2, overflow
    {30, 16, 2, 2, 2},  // experts with zero tokens
    {16, 4, 2, 0, 3},   // capacity 0: all dropped
};

TEST(Permute, DispatchPlacesEveryKeptChoiceOnce)
{
    for (const Shape& s : kShapes) {
        const GateResult g = route(s.tokens, s.experts, s.k, s.capacity, 1);
        for (DispatchLayout layout : {DispatchLayout::Packed, DispatchLayout::Padded}) {
            const Dispatch d = make_dispatch(g, layout);
            EXPECT_EQ(d.counts, g.counts);
            EXPECT_EQ(d.rows, layout == DispatchLayout::Padded ? s.experts * s.capacity
                                                               : std::accumulate(g.counts.begin(), g.counts.end(), 0));
            int filled = 0;
            for (int r = 0; r < d.rows; ++r) {
                filled += d.source[r] >= 0 ? 1 : 0;
            }
            int kept = 0;
            for (std::size_t c = 0; c < g.kept.size(); ++c) {
                if (g.kept[c]) {
                    ++kept;
                    const int r = d.row[c];
                    ASSERT_GE(r, d.offsets[g.expert[c]]);
                    ASSERT_LT(r, d.offsets[g.expert[c]] + d.counts[g.expert[c]]);
                    EXPECT_EQ(d.source[r], static_cast<int>(c) / s.k);
                    EXPECT_EQ(r - d.offsets[g.expert[c]], g.location[c]);
                } else {
                    EXPECT_EQ(d.row[c], -1);
                }
            }
            EXPECT_EQ(filled, kept);
        }
    }
}

TEST(Permute, PermuteThenInverseIsTheIdentity)
{
    // Dropless top-1: every token sits in exactly one row, so scattering the rows back
    // (permute_backward, the transpose) and combining with weight 1 both give x again.
    for (DispatchLayout layout : {DispatchLayout::Packed, DispatchLayout::Padded}) {
        const int tokens = 25, experts = 5, d = 7;
        const GateResult g = route(tokens, experts, 1, tokens, 2);
        const Dispatch disp = make_dispatch(g, layout);
        const auto x = random_vector(static_cast<std::size_t>(tokens) * d, 3);
        std::vector<float> y(static_cast<std::size_t>(disp.rows) * d), back(x.size()), out(x.size());
        permute(x, d, disp, y);
        permute_backward(y, d, disp, back);
        EXPECT_EQ(back, x);
        const std::vector<float> ones(tokens, 1.0f);
        unpermute(y, d, disp, ones, out);
        EXPECT_EQ(out, x);
    }
    // Dropless top-2 with the gate's weights (summing to one): unpermute(permute(x)) = x.
    const int tokens = 30, experts = 6, d = 4;
    const GateResult g = route(tokens, experts, 2, 2 * tokens, 4);
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    const auto x = random_vector(static_cast<std::size_t>(tokens) * d, 5);
    std::vector<float> y(static_cast<std::size_t>(disp.rows) * d), out(x.size());
    permute(x, d, disp, y);
    unpermute(y, d, disp, g.weight, out);
    for (std::size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(out[i], x[i], 1e-6);
    }
}

TEST(Permute, BackwardsAreTheTransposes)
{
    for (const Shape& s : kShapes) {
        const GateResult g = route(s.tokens, s.experts, s.k, s.capacity, 6);
        for (DispatchLayout layout : {DispatchLayout::Packed, DispatchLayout::Padded}) {
            const Dispatch disp = make_dispatch(g, layout);
            const std::size_t nx = static_cast<std::size_t>(s.tokens) * s.d;
            const std::size_t ny = static_cast<std::size_t>(disp.rows) * s.d;
            const auto x = random_vector(nx, 7), z = random_vector(nx, 8);
            const auto y = random_vector(ny, 9), w = random_vector(g.weight.size(), 10);
            std::vector<float> px(ny), bty(nx), uy(nx), dy(ny), dw(w.size());
            // <permute(x), y> = <x, permute_backward(y)>
            permute(x, s.d, disp, px);
            permute_backward(y, s.d, disp, bty);
            EXPECT_NEAR(dot(px, y), dot(x, bty), 1e-4);
            // <unpermute(y, w), z> = <y, dy> where dy = unpermute_backward(z)
            unpermute(y, s.d, disp, w, uy);
            unpermute_backward(z, y, s.d, disp, w, dy, dw);
            EXPECT_NEAR(dot(uy, z), dot(y, dy), 1e-4);
            // d<unpermute(y, w), z>/dw_c = dot(z_t, y_row) and it is linear in w, so
            // <dw, w> = <unpermute(y, w), z>.
            EXPECT_NEAR(dot(dw, w), dot(uy, z), 1e-4);
            for (std::size_t c = 0; c < g.kept.size(); ++c) {
                if (!g.kept[c]) {
                    EXPECT_EQ(dw[c], 0.0f);
                }
            }
        }
    }
}

TEST(Permute, PaddedLayoutZeroFillsEmptySlots)
{
    const GateResult g = route(12, 4, 2, 5, 11);
    const Dispatch disp = make_dispatch(g, DispatchLayout::Padded);
    const int d = 3;
    const std::vector<float> x(static_cast<std::size_t>(12) * d, 1.0f);
    std::vector<float> y(static_cast<std::size_t>(disp.rows) * d, -7.0f);
    permute(x, d, disp, y);
    for (int r = 0; r < disp.rows; ++r) {
        const float expect = disp.source[r] >= 0 ? 1.0f : 0.0f;
        for (int i = 0; i < d; ++i) {
            EXPECT_EQ(y[static_cast<std::size_t>(r) * d + i], expect);
        }
    }
    for (int e = 0; e < 4; ++e) {
        EXPECT_EQ(disp.offsets[e], e * 5);
    }
}

TEST(Permute, RejectsInconsistentRouting)
{
    const std::vector<int> expert = {0, 0};
    const std::vector<std::uint8_t> kept = {1, 1};
    // Two tokens claim slot 0 of expert 0.
    EXPECT_THROW(make_dispatch(expert, std::vector<int>{0, 0}, kept, 2, 1, 1, 2, DispatchLayout::Padded),
                 std::invalid_argument);
    // A gap: locations 0 and 2 of a packed expert.
    EXPECT_THROW(make_dispatch(expert, std::vector<int>{0, 2}, kept, 2, 1, 1, 4, DispatchLayout::Packed),
                 std::invalid_argument);
    // Location beyond capacity.
    EXPECT_THROW(make_dispatch(expert, std::vector<int>{0, 3}, kept, 2, 1, 1, 3, DispatchLayout::Padded),
                 std::invalid_argument);
    const GateResult g = route(4, 2, 1, 4, 1);
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    std::vector<float> x(7), y(static_cast<std::size_t>(disp.rows) * 2);
    EXPECT_THROW(permute(x, 2, disp, y), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels
