// Tests of softmax cross-entropy: uniform logits give log V, ignored rows, gradients.
#include "kernels/cross_entropy.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

TEST(CrossEntropy, UniformLogitsGiveLogClasses)
{
    const int rows = 5, classes = 11;
    const std::vector<float> logits(rows * classes, 3.0f);
    const std::vector<std::int32_t> targets = {0, 10, 1, -100, 5};
    std::vector<float> lse(rows);
    const CrossEntropyResult r = cross_entropy(logits, targets, rows, classes, -100, lse);
    EXPECT_EQ(r.count, 4);
    EXPECT_NEAR(r.loss_sum, 4 * std::log(11.0), 1e-5);
    EXPECT_NEAR(lse[0], 3.0 + std::log(11.0), 1e-5);
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferencesAndIgnoresPadding)
{
    const int rows = 4, classes = 6;
    auto logits = test::random_vector(rows * classes, 1, -4, 4);
    const std::vector<std::int32_t> targets = {2, 1, 1, 5};  // pad index 1 ignored
    std::vector<float> lse(rows), dlogits(logits.size());
    const auto loss = [&] {
        return cross_entropy(logits, targets, rows, classes, 1, lse).loss_sum / 2;
    };
    loss();
    cross_entropy_backward(logits, targets, lse, rows, classes, 1, 0.5f, dlogits);
    for (std::size_t i = 0; i < logits.size(); ++i) {
        EXPECT_NEAR(dlogits[i], test::finite_difference(logits, i, loss), 1e-3) << i;
    }
    for (int r = 0; r < rows; ++r) {
        double s = 0;
        for (int c = 0; c < classes; ++c) {
            s += dlogits[r * classes + c];
        }
        EXPECT_NEAR(s, 0.0, 1e-6);  // softmax minus one-hot sums to zero
    }
    for (int c = 0; c < classes; ++c) {
        EXPECT_EQ(dlogits[1 * classes + c], 0.0f);
    }
}

TEST(CrossEntropy, TargetOutOfRangeThrows)
{
    const std::vector<float> logits(6, 0.0f);
    const std::vector<std::int32_t> targets = {0, 3};
    std::vector<float> lse(2);
    EXPECT_THROW(cross_entropy(logits, targets, 2, 3, -100, lse), std::out_of_range);
}

}  // namespace
}  // namespace moesim::kernels
