// Fused bias + GELU (the activation between an FFN's two GEMMs), forward and backward,
// in two flavours: the exact erf form (fairseq's default `gelu`, torch's
// F.gelu(approximate='none')) and the tanh approximation (fairseq's `gelu_accurate`,
// Megatron's fused bias_gelu, torch's approximate='tanh').
#pragma once

#include <math.h>

#include <span>

#include "kernels/host_device.hpp"

namespace moesim::kernels {

enum class Gelu { Erf, Tanh };

// gelu(x) = x * Phi(x): Erf uses 0.5 x (1 + erf(x / sqrt 2)); Tanh uses
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
MOESIM_HD inline float gelu(float x, Gelu kind)
{
    if (kind == Gelu::Erf) {
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
    const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(inner));
}

// d gelu / dx.
MOESIM_HD inline float gelu_grad(float x, Gelu kind)
{
    if (kind == Gelu::Erf) {
        const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    const float th = tanhf(inner);
    const float dinner = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dinner;
}

// y (rows x cols) = gelu(x + bias), bias broadcast over rows (empty span = no bias).
// y may be the same buffer as x.
void bias_gelu(std::span<const float> x, std::span<const float> bias, int rows, int cols,
               Gelu kind, std::span<float> y);

// dx = dy * gelu'(x + bias) (x is the forward's input, before the bias); dbias (empty to
// skip) = column sums of dx. dx may be the same buffer as dy. Outputs are overwritten.
void bias_gelu_backward(std::span<const float> dy, std::span<const float> x,
                        std::span<const float> bias, int rows, int cols, Gelu kind,
                        std::span<float> dx, std::span<float> dbias);

}  // namespace moesim::kernels
