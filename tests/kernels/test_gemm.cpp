// Tests of the Eigen GEMM (every transpose combination, beta) and the dense layer.
#include "kernels/gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/linear.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

// op(X)[i][j] of a row-major matrix stored rows x cols (No) or cols x rows (Yes).
float at(const std::vector<float>& x, Trans t, int i, int j, int rows, int cols)
{
    return t == Trans::No ? x[static_cast<std::size_t>(i) * cols + j]
                          : x[static_cast<std::size_t>(j) * rows + i];
}

TEST(Gemm, AllTransposesMatchNaiveLoops)
{
    const int m = 5, n = 7, k = 3;
    for (Trans ta : {Trans::No, Trans::Yes}) {
        for (Trans tb : {Trans::No, Trans::Yes}) {
            const auto a = random_vector(m * k, 1), b = random_vector(k * n, 2);
            const auto c0 = random_vector(m * n, 3);
            std::vector<float> c = c0;
            gemm(ta, tb, m, n, k, 2.0f, a, b, 0.5f, c);
            for (int i = 0; i < m; ++i) {
                for (int j = 0; j < n; ++j) {
                    double s = 0;
                    for (int l = 0; l < k; ++l) {
                        s += at(a, ta, i, l, m, k) * at(b, tb, l, j, k, n);
                    }
                    EXPECT_NEAR(c[i * n + j], 2 * s + 0.5 * c0[i * n + j], 1e-5);
                }
            }
        }
    }
}

TEST(Gemm, BetaZeroIgnoresGarbageAndEmptyShapesWork)
{
    const std::vector<float> a = {1, 2}, b = {3, 4};
    std::vector<float> c = {std::numeric_limits<float>::quiet_NaN()};
    gemm(Trans::No, Trans::No, 1, 1, 2, 1.0f, a, b, 0.0f, c);
    EXPECT_EQ(c[0], 11.0f);
    std::vector<float> c2 = {5.0f};
    gemm(Trans::No, Trans::No, 1, 1, 0, 1.0f, {}, {}, 1.0f, c2);  // k = 0: C = beta * C
    EXPECT_EQ(c2[0], 5.0f);
    std::vector<float> none;
    gemm(Trans::No, Trans::No, 0, 3, 2, 1.0f, {}, random_vector(6, 1), 0.0f, none);
    EXPECT_THROW(gemm(Trans::No, Trans::No, 2, 2, 2, 1.0f, a, b, 0.0f, c), std::invalid_argument);
}

// Round to nearest, ties to even, at bf16's 8 significant bits (ulp 2^-7 at 1).
TEST(Bf16, RoundsToNearestEven)
{
    EXPECT_EQ(round_to_bf16(1.0f), 1.0f);
    EXPECT_EQ(round_to_bf16(1.0f + 0x1p-9f), 1.0f);                   // below half an ulp
    EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f), 1.0f);                   // a tie: to the even 1
    EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // above the tie
    EXPECT_EQ(round_to_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);     // a tie: to the even 1 + 2^-6
    EXPECT_EQ(round_to_bf16(-3.14159265f), -3.140625f);
    EXPECT_EQ(round_to_bf16(0x1p-130f), 0x1p-130f);                   // subnormals keep 7 bits
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_EQ(round_to_bf16(inf), inf);
    EXPECT_EQ(round_to_bf16(-inf), -inf);
    EXPECT_EQ(round_to_bf16(std::numeric_limits<float>::max()), inf);  // beyond bf16's largest
    EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
    EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::signaling_NaN())));
}

// Round to nearest, ties to even, at IEEE half's 11 significant bits (ulp 2^-10 at 1),
// exponents -14..15: overflow to infinity from 65520 (halfway past the largest, 65504),
// subnormals in steps of 2^-24 below 2^-14, zero at and below 2^-25 (a tie, to the even 0).
TEST(Fp16, RoundsToNearestEven)
{
    EXPECT_EQ(round_to_fp16(1.0f), 1.0f);
    EXPECT_EQ(round_to_fp16(1.0f + 0x1p-12f), 1.0f);                     // below half an ulp
    EXPECT_EQ(round_to_fp16(1.0f + 0x1p-11f), 1.0f);                     // a tie: to the even 1
    EXPECT_EQ(round_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 1.0f + 0x1p-10f);  // above the tie
    EXPECT_EQ(round_to_fp16(1.0f + 3 * 0x1p-11f), 1.0f + 0x1p-9f);       // a tie: to the even 1 + 2^-9
    EXPECT_EQ(round_to_fp16(-3.14159265f), -3.140625f);
    EXPECT_EQ(round_to_fp16(65504.0f), 65504.0f);                       // the largest half
    EXPECT_EQ(round_to_fp16(65519.0f), 65504.0f);                       // below the tie with 2^16
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_EQ(round_to_fp16(65520.0f), inf);                            // the tie: to the even 2^16, beyond
    EXPECT_EQ(round_to_fp16(-65520.0f), -inf);
    EXPECT_EQ(round_to_fp16(1e6f), inf);
    EXPECT_EQ(round_to_fp16(std::numeric_limits<float>::max()), inf);
    EXPECT_EQ(round_to_fp16(inf), inf);
    EXPECT_EQ(round_to_fp16(-inf), -inf);
    EXPECT_EQ(round_to_fp16(0x1p-14f), 0x1p-14f);                        // the smallest normal
    EXPECT_EQ(round_to_fp16(0x1p-14f + 0x1p-26f), 0x1p-14f);             // spacing 2^-24 below and above it
    EXPECT_EQ(round_to_fp16(0x1p-14f - 0x1p-26f), 0x1p-14f);
    EXPECT_EQ(round_to_fp16(0x1p-24f), 0x1p-24f);                        // the smallest subnormal
    EXPECT_EQ(round_to_fp16(0x1p-25f), 0.0f);                            // a tie: to the even 0
    EXPECT_EQ(round_to_fp16(0x1p-25f + 0x1p-40f), 0x1p-24f);             // above the tie
    EXPECT_EQ(round_to_fp16(3 * 0x1p-25f), 0x1p-23f);                    // a tie: to the even 2 * 2^-24
    EXPECT_EQ(round_to_fp16(5 * 0x1p-25f), 0x1p-23f);                    // a tie: to the even 2 * 2^-24
    EXPECT_EQ(round_to_fp16(-3 * 0x1p-24f), -3 * 0x1p-24f);
    EXPECT_EQ(round_to_fp16(0x1p-30f), 0.0f);
    EXPECT_TRUE(std::signbit(round_to_fp16(-0x1p-30f)));                // a signed zero
    EXPECT_EQ(round_to_fp16(0x1p-140f), 0.0f);                           // a float subnormal
    EXPECT_TRUE(std::isnan(round_to_fp16(std::numeric_limits<float>::quiet_NaN())));
    EXPECT_TRUE(std::isnan(round_to_fp16(std::numeric_limits<float>::signaling_NaN())));
    // Every half is kept: the 2^15 - 2^10 positive finite ones, walked by their bits.
    for (std::uint32_t bits = 1; bits < 0x7C00u; ++bits) {
        const std::uint32_t e = bits >> 10, m = bits & 0x3FFu;
        const float half = e == 0 ? static_cast<float>(m) * 0x1p-24f
                                  : std::ldexp(1.0f + static_cast<float>(m) * 0x1p-10f, static_cast<int>(e) - 15);
        ASSERT_EQ(round_to_fp16(half), half) << bits;
        ASSERT_EQ(round_to_fp16(-half), -half) << bits;
    }
}

// An fp16 GEMM is the fp32 GEMM of the rounded operands, to the bit; an operand beyond
// fp16's range becomes infinity in the product (what loss scaling watches for).
TEST(Gemm, Fp16RoundsTheOperandsOnly)
{
    const int m = 9, n = 11, k = 40;
    for (Trans ta : {Trans::No, Trans::Yes}) {
        for (Trans tb : {Trans::No, Trans::Yes}) {
            const auto a = random_vector(m * k, 1), b = random_vector(k * n, 2);
            const auto c0 = random_vector(m * n, 3);
            std::vector<float> ar(a.size()), br(b.size());
            round_to(GemmPrecision::fp16, a, ar);
            round_to(GemmPrecision::fp16, b, br);
            std::vector<float> c = c0, rounded = c0, fp32 = c0;
            gemm(ta, tb, m, n, k, 2.0f, a, b, 0.5f, c, GemmPrecision::fp16);
            gemm(ta, tb, m, n, k, 2.0f, ar, br, 0.5f, rounded);
            gemm(ta, tb, m, n, k, 2.0f, a, b, 0.5f, fp32);
            EXPECT_EQ(c, rounded);
            EXPECT_NE(c, fp32);
        }
    }
    const std::vector<float> a = {70000.0f, 1.0f}, b = {1.0f, 1.0f};
    std::vector<float> c(1), fp32(1);
    gemm(Trans::No, Trans::No, 1, 1, 2, 1.0f, a, b, 0.0f, c, GemmPrecision::fp16);
    gemm(Trans::No, Trans::No, 1, 1, 2, 1.0f, a, b, 0.0f, fp32);
    EXPECT_TRUE(std::isinf(c[0]));
    EXPECT_EQ(fp32[0], 70001.0f);
}

// A bf16 GEMM is the fp32 GEMM of the rounded operands, to the bit, and differs from the
// fp32 GEMM of the operands as given.
TEST(Gemm, Bf16RoundsTheOperandsOnly)
{
    const int m = 9, n = 11, k = 40;
    for (Trans ta : {Trans::No, Trans::Yes}) {
        for (Trans tb : {Trans::No, Trans::Yes}) {
            const auto a = random_vector(m * k, 1), b = random_vector(k * n, 2);
            const auto c0 = random_vector(m * n, 3);
            std::vector<float> ar(a.size()), br(b.size());
            round_to_bf16(a, ar);
            round_to_bf16(b, br);
            std::vector<float> c = c0, rounded = c0, fp32 = c0;
            gemm(ta, tb, m, n, k, 2.0f, a, b, 0.5f, c, GemmPrecision::bf16);
            gemm(ta, tb, m, n, k, 2.0f, ar, br, 0.5f, rounded);
            gemm(ta, tb, m, n, k, 2.0f, a, b, 0.5f, fp32);
            EXPECT_EQ(c, rounded);
            EXPECT_NE(c, fp32);
        }
    }
}

TEST(Linear, BackwardMatchesFiniteDifferences)
{
    const int rows = 3, in = 4, out = 5;
    auto x = random_vector(rows * in, 1), w = random_vector(out * in, 2), b = random_vector(out, 3);
    const auto r = random_vector(rows * out, 4);
    std::vector<float> y(rows * out);
    const auto loss = [&] {
        linear_forward(x, w, b, rows, in, out, y);
        return test::dot(r, y);
    };
    std::vector<float> dx(x.size()), dw(w.size()), db(b.size());
    linear_backward(r, x, w, rows, in, out, dx, dw, db);
    for (std::size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(dx[i], test::finite_difference(x, i, loss), 1e-3);
    }
    for (std::size_t i = 0; i < w.size(); ++i) {
        EXPECT_NEAR(dw[i], test::finite_difference(w, i, loss), 1e-3);
    }
    for (std::size_t i = 0; i < b.size(); ++i) {
        EXPECT_NEAR(db[i], test::finite_difference(b, i, loss), 1e-3);
    }
    // Accumulating adds a second copy of the weight gradients.
    std::vector<float> dw2 = dw, db2 = db;
    linear_backward(r, x, w, rows, in, out, {}, dw2, db2, true);
    EXPECT_NEAR(dw2[3], 2 * dw[3], 1e-6);
    EXPECT_NEAR(db2[1], 2 * db[1], 1e-6);
}

}  // namespace
}  // namespace moesim::kernels
