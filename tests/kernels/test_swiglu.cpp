// Tests of SwiGLU: known values of silu and its derivative, forward and backward against a
// naive double transcription of xformers' formula (silu(x1) * x2, with the gate in the
// first half of the columns), the backward against central differences of the forward,
// the backward in place over its input, and bad sizes.
// Tolerances (fp32 results of silu evaluated in double, inputs in [-4, 4]): 3e-7 abs +
// 1e-6 rel against the double reference (silu rounded once, then one or two float
// products); against central differences of the fp32 forward (h = 1e-2: truncation
// ~h^2/6 |f'''| ~ 2e-5, rounding ~6e-8 * 4 / 2h ~ 1e-5) 1e-4 abs + 1e-3 rel.
#include "kernels/swiglu.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

double silu_ref(double a)
{
    return a / (1.0 + std::exp(-a));
}

TEST(Silu, KnownValues)
{
    EXPECT_EQ(silu(0.0f), 0.0f);
    EXPECT_NEAR(silu(1.0f), 0.7310585786300049, 1e-7);    // sigmoid(1)
    EXPECT_NEAR(silu(-1.0f), -0.2689414213699951, 1e-7);  // -sigmoid(-1)
    EXPECT_NEAR(silu_grad(0.0f), 0.5f, 1e-7);
    EXPECT_NEAR(silu_grad(1.0f), 0.9276705118714867, 1e-7);  // s (1 + 1 - s), s = sigmoid(1)
    // Saturation: silu(a) -> a for large a, -> 0 (never NaN) for very negative a, down to
    // where exp(-a) overflows to inf (a < -709 in double; any float beyond).
    EXPECT_EQ(silu(100.0f), 100.0f);
    EXPECT_NEAR(silu(-100.0f), -100.0 * std::exp(-100.0), 1e-44);  // a float denormal
    EXPECT_EQ(silu(-1e30f), 0.0f);
    EXPECT_EQ(silu_grad(100.0f), 1.0f);
    EXPECT_NEAR(silu_grad(-100.0f), 0.0, 1e-40);
    EXPECT_EQ(silu_grad(-1e30f), 0.0f);
    for (float a = -6.0f; a <= 6.0f; a += 0.125f) {
        EXPECT_NEAR(silu(a), silu_ref(a), 1e-6 * (1.0 + std::fabs(a))) << a;
    }
}

TEST(Swiglu, ForwardAndBackwardMatchNaiveReference)
{
    const int rows = 7, f = 13;
    const auto x = random_vector(static_cast<std::size_t>(rows) * 2 * f, 1, -4.0f, 4.0f);
    const auto dy = random_vector(static_cast<std::size_t>(rows) * f, 2);
    std::vector<float> y(static_cast<std::size_t>(rows) * f), dx(x.size());
    swiglu_forward(x, rows, f, y);
    swiglu_backward(dy, x, rows, f, dx);
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < f; ++c) {
            const double a = x[static_cast<std::size_t>(r) * 2 * f + c];      // gate: first f columns
            const double b = x[static_cast<std::size_t>(r) * 2 * f + f + c];  // value: last f columns
            const double g = dy[static_cast<std::size_t>(r) * f + c];
            const double s = 1.0 / (1.0 + std::exp(-a));
            const double want_y = silu_ref(a) * b;
            const double want_da = g * b * s * (1.0 + a * (1.0 - s));
            const double want_db = g * silu_ref(a);
            EXPECT_NEAR(y[static_cast<std::size_t>(r) * f + c], want_y, 3e-7 + 1e-6 * std::fabs(want_y));
            EXPECT_NEAR(dx[static_cast<std::size_t>(r) * 2 * f + c], want_da, 3e-7 + 1e-6 * std::fabs(want_da));
            EXPECT_NEAR(dx[static_cast<std::size_t>(r) * 2 * f + f + c], want_db, 3e-7 + 1e-6 * std::fabs(want_db));
        }
    }
}

TEST(Swiglu, BackwardMatchesFiniteDifferences)
{
    const int rows = 4, f = 6;
    auto x = random_vector(static_cast<std::size_t>(rows) * 2 * f, 3, -4.0f, 4.0f);
    const auto dy = random_vector(static_cast<std::size_t>(rows) * f, 4);
    std::vector<float> y(dy.size()), dx(x.size());
    swiglu_backward(dy, x, rows, f, dx);
    // loss = <dy, swiglu(x)>, whose gradient with respect to x is the backward's dx.
    auto loss = [&] {
        swiglu_forward(x, rows, f, y);
        return test::dot(dy, y);
    };
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double fd = test::finite_difference(x, i, loss, 1e-2f);
        EXPECT_NEAR(dx[i], fd, 1e-4 + 1e-3 * std::fabs(fd)) << "element " << i << " (column " << i % (2 * f) << ")";
    }
}

TEST(Swiglu, BackwardInPlaceOverItsInput)
{
    const int rows = 5, f = 9;
    const auto x = random_vector(static_cast<std::size_t>(rows) * 2 * f, 5, -4.0f, 4.0f);
    const auto dy = random_vector(static_cast<std::size_t>(rows) * f, 6);
    std::vector<float> dx(x.size());
    swiglu_backward(dy, x, rows, f, dx);
    auto in_place = x;
    swiglu_backward(dy, in_place, rows, f, in_place);
    EXPECT_EQ(in_place, dx);
}

TEST(Swiglu, EmptyAndBadSizes)
{
    std::vector<float> none;
    EXPECT_NO_THROW(swiglu_forward(none, 0, 8, none));
    EXPECT_NO_THROW(swiglu_backward(none, none, 0, 8, none));
    std::vector<float> x(2 * 3 * 4), y(3 * 4), dx(x.size());
    EXPECT_THROW(swiglu_forward(x, 3, 4, dx), std::invalid_argument) << "y sized like x";
    EXPECT_THROW(swiglu_forward(y, 3, 4, y), std::invalid_argument) << "x sized like y";
    EXPECT_THROW(swiglu_forward(x, -3, 4, y), std::invalid_argument) << "negative rows";
    EXPECT_THROW(swiglu_backward(x, x, 3, 4, dx), std::invalid_argument) << "dy sized like x";
    EXPECT_THROW(swiglu_backward(y, x, 3, 4, y), std::invalid_argument) << "dx sized like y";
    EXPECT_THROW(swiglu_backward(y, y, 3, 4, dx), std::invalid_argument) << "x sized like y";
}

}  // namespace
}  // namespace moesim::kernels
