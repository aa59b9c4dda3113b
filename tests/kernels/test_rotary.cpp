// Tests of the rotary position embedding against closed forms: hand-computed rotations
// that pin the rotate_half convention (pairs (i, i + d/2), not adjacent elements), an
// independent transcription of open_lm's formula, position 0 as the identity, each pair's
// norm preserved, backward as the transpose and inverse of forward, q.k after rotation a
// function of the position difference only, and q and k as blocks of a fused QKV buffer.
// Tolerances (fp32 results of a double computation, inputs in [-1, 1]): 2e-7 abs + 2e-7
// rel against the double closed forms (one rounding to float, 0.5 ulp); 1e-6 after a
// forward-backward round trip (two roundings); 1e-5 on dot products over a 64-wide head.
#include "kernels/rotary.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

// open_lm's formula transcribed in double: inv_freq = 1 / theta^(arange(0, d, 2) / d),
// emb = cat(freqs, freqs), y = x cos(emb) + rotate_half(x) sin(emb), for one head vector.
std::vector<double> open_lm_rotary(std::span<const float> x, int pos, double theta)
{
    const int d = static_cast<int>(x.size());
    const int half = d / 2;
    std::vector<double> emb(d), rotated_half(d), y(d);
    for (int j = 0; j < half; ++j) {
        const double inv_freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / d);
        emb[j] = emb[j + half] = pos * inv_freq;
        rotated_half[j] = -static_cast<double>(x[j + half]);
        rotated_half[j + half] = x[j];
    }
    for (int j = 0; j < d; ++j) {
        y[j] = x[j] * std::cos(emb[j]) + rotated_half[j] * std::sin(emb[j]);
    }
    return y;
}

TEST(Rotary, HandComputedRotations)
{
    // head_dim 2: one pair, inv_freq = 1, so position p rotates (1, 0) by p radians.
    {
        std::vector<float> x = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f};  // 3 positions, one head
        rotary_forward({3, 3, 1, 2, 10000.0}, x, 2);
        for (int p = 0; p < 3; ++p) {
            EXPECT_FLOAT_EQ(x[2 * p], static_cast<float>(std::cos(p))) << p;
            EXPECT_FLOAT_EQ(x[2 * p + 1], static_cast<float>(std::sin(p))) << p;
        }
    }
    // head_dim 4, theta 100: inv_freq = {1, 100^-1/2 = 0.1}. At position 3 the pair
    // (x0, x2) turns by 3 rad and (x1, x3) by 0.3 rad; the interleaved convention would
    // pair (x0, x1) and (x2, x3) instead and give different numbers.
    {
        const int seq = 4;
        std::vector<float> x(seq * 4, 0.0f);
        const float v[4] = {0.5f, -0.25f, 0.75f, 1.0f};
        for (int k = 0; k < 4; ++k) {
            x[3 * 4 + k] = v[k];
        }
        rotary_forward({seq, seq, 1, 4, 100.0}, x, 4);
        const double c0 = std::cos(3.0), s0 = std::sin(3.0), c1 = std::cos(0.3), s1 = std::sin(0.3);
        EXPECT_FLOAT_EQ(x[12], static_cast<float>(0.5 * c0 - 0.75 * s0));
        EXPECT_FLOAT_EQ(x[14], static_cast<float>(0.75 * c0 + 0.5 * s0));
        EXPECT_FLOAT_EQ(x[13], static_cast<float>(-0.25 * c1 - 1.0 * s1));
        EXPECT_FLOAT_EQ(x[15], static_cast<float>(1.0 * c1 + -0.25 * s1));
    }
}

TEST(Rotary, MatchesOpenLmFormula)
{
    struct Case {
        int batch, seq, heads, head_dim;
        double theta;
    };
    for (const Case c : {Case{2, 7, 3, 8, 10000.0}, Case{1, 300, 2, 64, 10000.0}, Case{3, 5, 1, 2, 500000.0}}) {
        const RotaryShape s{c.batch * c.seq, c.seq, c.heads, c.head_dim, c.theta};
        SCOPED_TRACE("seq " + std::to_string(c.seq) + " heads " + std::to_string(c.heads) + " head_dim " +
                     std::to_string(c.head_dim) + " theta " + std::to_string(c.theta));
        const int width = c.heads * c.head_dim;
        const auto x0 = random_vector(static_cast<std::size_t>(s.rows) * width, 11);
        auto x = x0;
        rotary_forward(s, x, width);
        for (int r = 0; r < s.rows; ++r) {
            for (int h = 0; h < c.heads; ++h) {
                const std::size_t at = static_cast<std::size_t>(r) * width + static_cast<std::size_t>(h) * c.head_dim;
                const auto y = open_lm_rotary(std::span<const float>(x0).subspan(at, c.head_dim), r % c.seq, c.theta);
                for (int j = 0; j < c.head_dim; ++j) {
                    ASSERT_NEAR(x[at + j], y[j], 2e-7 + 2e-7 * std::fabs(y[j])) << "row " << r << " head " << h << " j " << j;
                }
            }
        }
    }
}

TEST(Rotary, PositionZeroIsIdentityAndPairNormsArePreserved)
{
    const int batch = 3, seq = 50, heads = 4, d = 32, half = d / 2;
    const RotaryShape s{batch * seq, seq, heads, d, 10000.0};
    const auto x0 = random_vector(static_cast<std::size_t>(s.rows) * heads * d, 3);
    auto x = x0;
    rotary_forward(s, x, heads * d);
    for (int r = 0; r < s.rows; ++r) {
        for (int h = 0; h < heads; ++h) {
            const std::size_t at = (static_cast<std::size_t>(r) * heads + h) * d;
            for (int i = 0; i < half; ++i) {
                if (r % seq == 0) {
                    // cos 0 = 1 and sin 0 = 0 exactly: bit-for-bit unchanged.
                    EXPECT_EQ(x[at + i], x0[at + i]);
                    EXPECT_EQ(x[at + i + half], x0[at + i + half]);
                }
                const double before = static_cast<double>(x0[at + i]) * x0[at + i] +
                                      static_cast<double>(x0[at + i + half]) * x0[at + i + half];
                const double after = static_cast<double>(x[at + i]) * x[at + i] +
                                     static_cast<double>(x[at + i + half]) * x[at + i + half];
                EXPECT_NEAR(after, before, 1e-6 * (1.0 + before)) << "row " << r << " head " << h << " pair " << i;
            }
        }
    }
}

TEST(Rotary, BackwardIsTheTransposeAndInverse)
{
    const int batch = 2, seq = 33, heads = 3, d = 16;
    const RotaryShape s{batch * seq, seq, heads, d, 10000.0};
    const std::size_t n = static_cast<std::size_t>(s.rows) * heads * d;
    const auto x0 = random_vector(n, 5);
    const auto g0 = random_vector(n, 6);

    // Inverse: backward(forward(x)) = x.
    auto x = x0;
    rotary_forward(s, x, heads * d);
    rotary_backward(s, x, heads * d);
    for (std::size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(x[i], x0[i], 1e-6) << i;
    }
    // Transpose: <R x, g> = <x, R^T g>, which makes backward the gradient of forward.
    auto rx = x0;
    rotary_forward(s, rx, heads * d);
    auto rtg = g0;
    rotary_backward(s, rtg, heads * d);
    const double lhs = test::dot(rx, g0);
    const double rhs = test::dot(x0, rtg);
    std::printf("  <R x, g> = %.9f, <x, R^T g> = %.9f\n", lhs, rhs);
    EXPECT_NEAR(lhs, rhs, 1e-5);
}

TEST(Rotary, DotProductDependsOnlyOnThePositionDifference)
{
    // One query vector and one key vector placed at every position: after rotation,
    // q_m . k_n = q^T R(m)^T R(n) k = q^T R(n - m) k depends on n - m alone.
    const int seq = 64, d = 64;
    const auto q0 = random_vector(d, 21);
    const auto k0 = random_vector(d, 22);
    std::vector<float> q(static_cast<std::size_t>(seq) * d), k(q.size());
    for (int p = 0; p < seq; ++p) {
        std::copy(q0.begin(), q0.end(), q.begin() + static_cast<std::ptrdiff_t>(p) * d);
        std::copy(k0.begin(), k0.end(), k.begin() + static_cast<std::ptrdiff_t>(p) * d);
    }
    const RotaryShape s{seq, seq, 1, d, 10000.0};
    rotary_forward(s, q, d);
    rotary_forward(s, k, d);
    auto dot_at = [&](int m, int n) {
        return test::dot(std::span<const float>(q).subspan(static_cast<std::size_t>(m) * d, d),
                         std::span<const float>(k).subspan(static_cast<std::size_t>(n) * d, d));
    };
    for (int delta = -(seq - 1); delta < seq; delta += 7) {
        const int m0 = delta < 0 ? -delta : 0;
        const double first = dot_at(m0, m0 + delta);
        for (int m = m0 + 1; m + delta < seq && m < seq; ++m) {
            ASSERT_NEAR(dot_at(m, m + delta), first, 1e-5) << "delta " << delta << " m " << m;
        }
    }
    // And it is not constant in the difference (the rotation does something).
    EXPECT_GT(std::fabs(dot_at(0, 0) - dot_at(0, 1)), 1e-3);
}

TEST(Rotary, RotatesQAndKBlocksOfAFusedQkvBufferInOneCall)
{
    // Fused rows [q (heads) | k (kv_heads) | v (kv_heads) | 3 padding columns]: one call
    // with heads + kv_heads heads on the whole buffer equals one call per block, and v and
    // the padding (NaN, never read) are left alone.
    const int batch = 2, seq = 9, heads = 4, kv_heads = 2, d = 8;
    const int rows = batch * seq, qw = heads * d, kw = kv_heads * d, ld = qw + 2 * kw + 3;
    auto qkv = random_vector(static_cast<std::size_t>(rows) * ld, 31);
    for (int r = 0; r < rows; ++r) {
        for (int c = qw + 2 * kw; c < ld; ++c) {
            qkv[static_cast<std::size_t>(r) * ld + c] = std::numeric_limits<float>::quiet_NaN();
        }
    }
    const auto original = qkv;
    auto together = qkv;
    rotary_forward({rows, seq, heads + kv_heads, d, 10000.0}, together, ld);
    auto separate = qkv;
    const std::span<float> all(separate);
    rotary_forward({rows, seq, heads, d, 10000.0}, all, ld);
    rotary_forward({rows, seq, kv_heads, d, 10000.0}, all.subspan(qw), ld);
    for (std::size_t i = 0; i < qkv.size(); ++i) {
        const int c = static_cast<int>(i % ld);
        if (c < qw + kw) {
            EXPECT_EQ(together[i], separate[i]) << i;
        } else if (c < qw + 2 * kw) {
            EXPECT_EQ(together[i], original[i]) << "v changed at " << i;
        } else {
            EXPECT_TRUE(std::isnan(together[i])) << "padding changed at " << i;
        }
    }
    // The k block's span may end at its last row's last k column.
    std::vector<float> tight(static_cast<std::size_t>(rows - 1) * ld + kw, 0.5f);
    EXPECT_NO_THROW(rotary_backward({rows, seq, kv_heads, d, 10000.0}, tight, ld));
}

TEST(Rotary, EmptyBatchIsANoOp)
{
    std::vector<float> none;
    EXPECT_NO_THROW(rotary_forward({0, 16, 2, 8, 10000.0}, none, 16));
    EXPECT_NO_THROW(rotary_backward({0, 16, 2, 8, 10000.0}, none, 16));
}

TEST(Rotary, BadShapesThrow)
{
    std::vector<float> x(64, 0.0f);
    auto throws = [&](const RotaryShape& s, int ld, const char* why) {
        EXPECT_THROW(rotary_forward(s, x, ld), std::invalid_argument) << why;
        EXPECT_THROW(rotary_backward(s, x, ld), std::invalid_argument) << why;
    };
    throws({4, 4, 2, 7, 10000.0}, 16, "odd head_dim");
    throws({4, 4, 2, 0, 10000.0}, 16, "head_dim 0");
    throws({4, 4, 0, 8, 10000.0}, 16, "no heads");
    throws({4, 3, 2, 8, 10000.0}, 16, "rows not a multiple of seq");
    throws({4, 0, 2, 8, 10000.0}, 16, "seq 0");
    throws({-4, 4, 2, 8, 10000.0}, 16, "negative rows");
    throws({4, 4, 2, 8, 0.0}, 16, "theta 0");
    throws({4, 4, 2, 8, std::numeric_limits<double>::infinity()}, 16, "theta inf");
    throws({4, 4, 2, 8, 10000.0}, 15, "ld below heads * head_dim");
    throws({8, 4, 2, 8, 10000.0}, 16, "span too short");
    try {
        rotary_forward({8, 4, 2, 8, 10000.0}, x, 16);
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("rotary_forward: x has 64 elements, needs at least 128"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace moesim::kernels
