// Softmax cross-entropy of the language-model head, forward and backward:
// loss_i = logsumexp(logits_i) - logits_i[target_i], summed over rows whose target is
// not ignore_index (fairseq's cross_entropy criterion: nll_loss(..., reduction="sum",
// ignore_index=padding_idx); the caller divides by the count or sample size).
#pragma once

#include <cstdint>
#include <span>

namespace moesim::kernels {

struct CrossEntropyResult {
    double loss_sum = 0;  // sum of per-row losses in nats over counted rows
    int count = 0;        // rows whose target is not ignore_index
};

// logits: rows x classes; targets: rows; writes lse (rows, logsumexp of each row, kept for
// the backward). A target outside [0, classes) other than ignore_index throws
// std::out_of_range naming the row.
CrossEntropyResult cross_entropy(std::span<const float> logits, std::span<const std::int32_t> targets,
                                 int rows, int classes, std::int32_t ignore_index,
                                 std::span<float> lse);

// dlogits = grad_scale * (softmax(logits) - onehot(target)) for counted rows, 0 for
// ignored rows; grad_scale is d(loss)/d(loss_sum), e.g. 1 / count for a mean.
void cross_entropy_backward(std::span<const float> logits, std::span<const std::int32_t> targets,
                            std::span<const float> lse, int rows, int classes,
                            std::int32_t ignore_index, float grad_scale, std::span<float> dlogits);

}  // namespace moesim::kernels
