// CPU reference of softmax cross-entropy, forward and backward.
#include "kernels/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {

void check_target(std::int32_t target, int row, int classes, std::int32_t ignore_index)
{
    if (target != ignore_index && (target < 0 || target >= classes)) {
        throw std::out_of_range("moesim::kernels::cross_entropy: target " +
                                std::to_string(target) + " of row " + std::to_string(row) +
                                " is outside [0, " + std::to_string(classes) + ")");
    }
}

}  // namespace

CrossEntropyResult cross_entropy(std::span<const float> logits, std::span<const std::int32_t> targets,
                                 int rows, int classes, std::int32_t ignore_index,
                                 std::span<float> lse)
{
    const char* fn = "cross_entropy";
    require(rows >= 0 && classes >= 1, fn, "needs rows >= 0 and classes >= 1");
    require_size(logits.size(), elems(rows, classes), fn, "logits");
    require_size(targets.size(), static_cast<std::size_t>(rows), fn, "targets");
    require_size(lse.size(), static_cast<std::size_t>(rows), fn, "lse");
    CrossEntropyResult result;
    for (int r = 0; r < rows; ++r) {
        check_target(targets[r], r, classes, ignore_index);
        const float* x = logits.data() + elems(r, classes);
        const float mx = *std::max_element(x, x + classes);
        double sum = 0;
        for (int c = 0; c < classes; ++c) {
            sum += std::exp(static_cast<double>(x[c] - mx));
        }
        const double l = mx + std::log(sum);
        lse[r] = static_cast<float>(l);
        if (targets[r] != ignore_index) {
            result.loss_sum += l - x[targets[r]];
            ++result.count;
        }
    }
    return result;
}

void cross_entropy_backward(std::span<const float> logits, std::span<const std::int32_t> targets,
                            std::span<const float> lse, int rows, int classes,
                            std::int32_t ignore_index, float grad_scale, std::span<float> dlogits)
{
    const char* fn = "cross_entropy_backward";
    require(rows >= 0 && classes >= 1, fn, "needs rows >= 0 and classes >= 1");
    require_size(logits.size(), elems(rows, classes), fn, "logits");
    require_size(targets.size(), static_cast<std::size_t>(rows), fn, "targets");
    require_size(lse.size(), static_cast<std::size_t>(rows), fn, "lse");
    require_size(dlogits.size(), elems(rows, classes), fn, "dlogits");
    for (int r = 0; r < rows; ++r) {
        check_target(targets[r], r, classes, ignore_index);
        const float* x = logits.data() + elems(r, classes);
        float* dx = dlogits.data() + elems(r, classes);
        if (targets[r] == ignore_index) {
            std::fill(dx, dx + classes, 0.0f);
            continue;
        }
        for (int c = 0; c < classes; ++c) {
            dx[c] = grad_scale * std::exp(x[c] - lse[r]);
        }
        dx[targets[r]] -= grad_scale;
    }
}

}  // namespace moesim::kernels
