// Tests of LayerNorm and RMSNorm: normalised moments, gradients against finite differences.
#include "kernels/norm.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::finite_difference;
using test::random_vector;

TEST(LayerNorm, NormalisesEachRow)
{
    const int rows = 4, cols = 64;
    const auto x = random_vector(rows * cols, 1, -5, 9);
    const std::vector<float> ones(cols, 1.0f), zeros(cols, 0.0f);
    std::vector<float> y(x.size()), mean(rows), rstd(rows);
    layer_norm(x, ones, zeros, rows, cols, 1e-5f, y, mean, rstd);
    for (int r = 0; r < rows; ++r) {
        double m = 0, v = 0;
        for (int c = 0; c < cols; ++c) {
            m += y[r * cols + c];
        }
        m /= cols;
        for (int c = 0; c < cols; ++c) {
            v += (y[r * cols + c] - m) * (y[r * cols + c] - m);
        }
        v /= cols;
        EXPECT_NEAR(m, 0.0, 1e-6);
        EXPECT_NEAR(v, 1.0, 1e-3);  // eps pulls it just below 1
    }
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences)
{
    const int rows = 3, cols = 8;
    auto x = random_vector(rows * cols, 2, -2, 2);
    auto gamma = random_vector(cols, 3, 0.5f, 1.5f);
    auto beta = random_vector(cols, 4);
    const auto w = random_vector(rows * cols, 5);  // loss = <w, y>
    std::vector<float> y(x.size()), mean(rows), rstd(rows);
    const auto loss = [&] {
        layer_norm(x, gamma, beta, rows, cols, 1e-5f, y, mean, rstd);
        return test::dot(w, y);
    };
    loss();
    std::vector<float> dx(x.size()), dgamma(cols), dbeta(cols);
    layer_norm_backward(w, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
    for (std::size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(dx[i], finite_difference(x, i, loss), 2e-3) << i;
    }
    for (int c = 0; c < cols; ++c) {
        EXPECT_NEAR(dgamma[c], finite_difference(gamma, c, loss), 2e-3) << c;
        EXPECT_NEAR(dbeta[c], finite_difference(beta, c, loss), 2e-3) << c;
    }
}

TEST(RmsNorm, UnitRmsAndBackward)
{
    const int rows = 3, cols = 16;
    auto x = random_vector(rows * cols, 6, -3, 3);
    auto gamma = random_vector(cols, 7, 0.5f, 1.5f);
    const std::vector<float> ones(cols, 1.0f);
    std::vector<float> y(x.size()), rstd(rows);
    rms_norm(x, ones, rows, cols, 0.0f, y, rstd);
    for (int r = 0; r < rows; ++r) {
        double sq = 0;
        for (int c = 0; c < cols; ++c) {
            sq += y[r * cols + c] * y[r * cols + c];
        }
        EXPECT_NEAR(sq / cols, 1.0, 1e-5);
    }
    const auto w = random_vector(rows * cols, 8);
    const auto loss = [&] {
        rms_norm(x, gamma, rows, cols, 1e-6f, y, rstd);
        return test::dot(w, y);
    };
    loss();
    std::vector<float> dx(x.size()), dgamma(cols);
    rms_norm_backward(w, x, gamma, rstd, rows, cols, dx, dgamma);
    for (std::size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(dx[i], finite_difference(x, i, loss), 2e-3) << i;
    }
    for (int c = 0; c < cols; ++c) {
        EXPECT_NEAR(dgamma[c], finite_difference(gamma, c, loss), 2e-3) << c;
    }
}

TEST(Norm, RejectsWrongSizes)
{
    std::vector<float> x(6), g(3), b(3), y(6), m(2), s(1);
    EXPECT_THROW(layer_norm(x, g, b, 2, 3, 1e-5f, y, m, s), std::invalid_argument);
    EXPECT_THROW(rms_norm(x, b, 2, 2, 1e-5f, y, m), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels
