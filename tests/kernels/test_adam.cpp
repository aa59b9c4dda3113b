// Tests of the Adam step: the first step's closed form, weight decay flavours, and a
// run of steps against a double-precision transcription of fairseq's update.
#include "kernels/adam.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

TEST(Adam, FirstStepMovesEachParameterByAboutLr)
{
    AdamOptions o;
    o.lr = 0.01f;
    o.eps = 0.0f;
    std::vector<float> p = {1.0f, -2.0f, 0.5f}, m(3, 0.0f), v(3, 0.0f);
    const std::vector<float> g = {0.3f, -4.0f, 1e-3f};
    adam_step(p, g, m, v, 1, o);
    // Step 1 with eps = 0: m_hat / sqrt(v_hat) = sign(g).
    EXPECT_NEAR(p[0], 1.0f - 0.01f, 1e-6);
    EXPECT_NEAR(p[1], -2.0f + 0.01f, 1e-6);
    EXPECT_NEAR(p[2], 0.5f - 0.01f, 1e-6);
    EXPECT_NEAR(m[1], 0.1f * -4.0f, 1e-6);
    EXPECT_FLOAT_EQ(v[1], (1.0f - 0.999f) * 16.0f);
}

TEST(Adam, WeightDecayDecoupledOrL2)
{
    AdamOptions o;
    o.lr = 0.1f;
    o.weight_decay = 0.5f;
    std::vector<float> p = {2.0f}, m = {0.0f}, v = {0.0f};
    const std::vector<float> zero = {0.0f};
    adam_step(p, zero, m, v, 1, o);  // decoupled: p -= lr * wd * p, no gradient step
    EXPECT_FLOAT_EQ(p[0], 2.0f - 0.1f * 0.5f * 2.0f);
    o.decoupled_weight_decay = false;  // L2: g = wd * p = 1, so a step of about lr
    p = {2.0f};
    m = {0.0f};
    v = {0.0f};
    adam_step(p, zero, m, v, 1, o);
    EXPECT_NEAR(p[0], 2.0f - 0.1f, 1e-6);
    EXPECT_THROW(adam_step(p, zero, m, v, 0, o), std::invalid_argument);
}

TEST(Adam, ManyStepsMatchFairseqInDouble)
{
    AdamOptions o;
    o.lr = 3e-3f;
    o.beta1 = 0.9f;
    o.beta2 = 0.98f;
    o.eps = 1e-6f;
    o.weight_decay = 0.01f;
    const std::size_t n = 64;
    std::vector<float> p = test::random_vector(n, 1), m(n, 0.0f), v(n, 0.0f);
    std::vector<double> pd(p.begin(), p.end()), md(n, 0.0), vd(n, 0.0);
    for (int step = 1; step <= 20; ++step) {
        const auto g = test::random_vector(n, 100 + step);
        adam_step(p, g, m, v, step, o);
        const double b1 = o.beta1, b2 = o.beta2;
        const double size = o.lr * std::sqrt(1 - std::pow(b2, step)) / (1 - std::pow(b1, step));
        for (std::size_t i = 0; i < n; ++i) {
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * g[i] * g[i];
            pd[i] -= static_cast<double>(o.weight_decay) * o.lr * pd[i];
            pd[i] -= size * md[i] / (std::sqrt(vd[i]) + o.eps);
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(p[i], pd[i], 1e-5) << i;
    }
}

}  // namespace
}  // namespace moesim::kernels
