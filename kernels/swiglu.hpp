// SwiGLU, the activation between a gated FFN's GEMMs (open_lm's dense FFN, Llama's MLP):
// out = silu(a) * b from the fused gate|value projection, forward and backward. CPU
// reference.
//
// Column order: the input row is [a | b], the first f columns the gate a (silu applied),
// the last f the value b, as xformers' SwiGLU (xformers/ops/swiglu_op.py, which open_lm's
// default ffn_type "swiglu" instantiates with bias=False) lays out its packed w12: the
// first f rows of w12 are w1 (gate), the last f are w2 (value), hidden = silu(x w1^T) *
// (x w2^T), then w3 projects back. Llama names the same matrices w1 (gate), w3 (value),
// w2 (output); its separate gate and value GEMMs map here by writing them into the two
// column halves of one rows x 2f buffer.
#pragma once

#include <math.h>

#include <span>

#include "kernels/host_device.hpp"

namespace moesim::kernels {

// silu and its derivative are evaluated in double and rounded once to float, on the CPU
// and in the CUDA kernel alike (these MOESIM_HD functions): in float, the derivative's
// 1 - sigmoid(a) and 1 + a (1 - s) cancel, and CUDA's expf (within 2 ulps of glibc's)
// moved the backward's da by up to 3.3e-6 (on values up to ~7) on an H100 against the
// CPU. In double both sides agree to a float ulp. The kernel stays bound by memory: A100 and H100 (sm_80, sm_90, what this
// project builds for) run FP64 at half their FP32 rate.

// sigmoid(a) = 1 / (1 + exp(-a)) in double; exp overflowing to inf for a < -709 gives 0.
MOESIM_HD inline double swiglu_sigmoid(double a)
{
    return 1.0 / (1.0 + exp(-a));
}

// silu(a) = a * sigmoid(a) (torch.nn.functional.silu).
MOESIM_HD inline float silu(float a)
{
    const double x = a;
    return static_cast<float>(x * swiglu_sigmoid(x));
}

// d silu / da = s (1 + a (1 - s)), s = sigmoid(a): PyTorch's silu_backward formula, which
// xformers' decomposed SwiGLU backward uses too.
MOESIM_HD inline float silu_grad(float a)
{
    const double x = a;
    const double s = swiglu_sigmoid(x);
    return static_cast<float>(s * (1.0 + x * (1.0 - s)));
}

// y (rows x f) = silu(a) * b, with x (rows x 2f) = [a | b] row by row. Contiguous rows
// (x's row stride 2f, y's f). Sizes must match exactly; a mismatch throws
// std::invalid_argument.
void swiglu_forward(std::span<const float> x, int rows, int f, std::span<float> y);

// From dy (rows x f) and the forward's x = [a | b]: dx (rows x 2f) = [da | db] with
// da = dy * b * silu'(a), db = dy * silu(a). dx may be the same buffer as x (each (row, c)
// reads a and b before writing da and db), so the fused projection's output can take its
// own gradient; it is overwritten, not accumulated.
void swiglu_backward(std::span<const float> dy, std::span<const float> x, int rows, int f,
                     std::span<float> dx);

}  // namespace moesim::kernels
