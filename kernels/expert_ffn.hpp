// The experts of an MoE layer on CPU: per expert e, h = gelu(x W1_e^T + b1_e) and
// y = h W2_e^T + b2_e (fairseq's FeedForwardNetwork: fc1 -> activation -> fc2; dropout
// is left to the caller), run as two grouped GEMMs over the expert-ordered buffer.
#pragma once

#include <span>

#include "kernels/activation.hpp"
#include "kernels/grouped_gemm.hpp"

namespace moesim::kernels {

struct ExpertFfnShape {
    int experts = 0;
    int model_dim = 0;  // d
    int ffn_dim = 0;    // f
    Gelu activation = Gelu::Erf;
};

// Weights, nn.Linear layout, experts back to back: w1 experts x f x d, b1 experts x f,
// w2 experts x d x f, b2 experts x d.
struct ExpertFfnWeights {
    std::span<const float> w1, b1, w2, b2;
};

// x: rows x d (groups from the dispatch). Saves pre (rows x f) = x W1^T before the bias,
// and act (rows x f) = gelu(pre + b1), for the backward; writes y (rows x d). Rows outside
// every group are not written. `precision`: the four grouped GEMMs' operands (gemm.hpp;
// under bf16 or fp16 x, act and the weights are rounded, pre, act and y stay fp32).
void expert_ffn_forward(const ExpertFfnShape& shape, const GroupRows& groups,
                        std::span<const float> x, const ExpertFfnWeights& weights,
                        std::span<float> pre, std::span<float> act, std::span<float> y,
                        GemmPrecision precision = GemmPrecision::fp32);

// Gradients given dy (rows x d) and the forward's x, pre, act: dx (rows x d, rows outside
// groups not written) and the weight gradients (same shapes as the weights), overwritten
// or, with accumulate, added to. `precision`: the GEMMs' operands (dy, the activation
// gradient, x, act and the weights rounded under bf16 or fp16); bias gradients sum fp32 values.
struct ExpertFfnGrads {
    std::span<float> w1, b1, w2, b2;
};
void expert_ffn_backward(const ExpertFfnShape& shape, const GroupRows& groups,
                         std::span<const float> dy, std::span<const float> x,
                         const ExpertFfnWeights& weights, std::span<const float> pre,
                         std::span<const float> act, std::span<float> dx,
                         const ExpertFfnGrads& grads, bool accumulate = false,
                         GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels
