// Tests of bias + GELU: known values, derivatives against finite differences.
#include "kernels/activation.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

TEST(Gelu, KnownValues)
{
    EXPECT_EQ(gelu(0.0f, Gelu::Erf), 0.0f);
    EXPECT_EQ(gelu(0.0f, Gelu::Tanh), 0.0f);
    EXPECT_NEAR(gelu(1.0f, Gelu::Erf), 0.8413447460685429, 1e-6);   // Phi(1)
    EXPECT_NEAR(gelu(1.0f, Gelu::Tanh), 0.8411919906082768, 1e-6);  // torch approximate='tanh'
    EXPECT_NEAR(gelu(-3.0f, Gelu::Erf), -3.0 * 0.0013498980316301, 1e-6);
    EXPECT_NEAR(gelu_grad(0.0f, Gelu::Erf), 0.5f, 1e-7);
    EXPECT_NEAR(gelu_grad(0.0f, Gelu::Tanh), 0.5f, 1e-7);
    // The two forms agree to ~1e-3 over the usual range.
    for (float x = -5.0f; x <= 5.0f; x += 0.25f) {
        EXPECT_NEAR(gelu(x, Gelu::Erf), gelu(x, Gelu::Tanh), 2e-3) << x;
    }
}

TEST(Gelu, GradientMatchesFiniteDifferences)
{
    for (Gelu kind : {Gelu::Erf, Gelu::Tanh}) {
        for (double x = -4.0; x <= 4.0; x += 0.1) {
            const double h = 1e-3;
            const double fd = (static_cast<double>(gelu(static_cast<float>(x + h), kind)) -
                               gelu(static_cast<float>(x - h), kind)) / (2 * h);
            EXPECT_NEAR(gelu_grad(static_cast<float>(x), kind), fd, 2e-4) << x;
        }
    }
}

TEST(BiasGelu, ForwardAndBackward)
{
    const int rows = 5, cols = 7;
    const auto x = test::random_vector(rows * cols, 1, -3, 3);
    const auto b = test::random_vector(cols, 2);
    const auto dy = test::random_vector(rows * cols, 3);
    for (Gelu kind : {Gelu::Erf, Gelu::Tanh}) {
        std::vector<float> y(x.size()), dx(x.size()), db(cols);
        bias_gelu(x, b, rows, cols, kind, y);
        bias_gelu_backward(dy, x, b, rows, cols, kind, dx, db);
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < cols; ++c) {
                const int i = r * cols + c;
                EXPECT_EQ(y[i], gelu(x[i] + b[c], kind));
                EXPECT_EQ(dx[i], dy[i] * gelu_grad(x[i] + b[c], kind));
            }
        }
        for (int c = 0; c < cols; ++c) {
            double s = 0;
            for (int r = 0; r < rows; ++r) {
                s += dx[r * cols + c];
            }
            EXPECT_NEAR(db[c], s, 1e-6);
        }
        // No bias, in place.
        std::vector<float> z = x;
        bias_gelu(z, {}, rows, cols, kind, z);
        EXPECT_EQ(z[3], gelu(x[3], kind));
    }
}

}  // namespace
}  // namespace moesim::kernels
