// A dense layer y = x W^T + b in PyTorch's nn.Linear layout (W is out x in), forward and
// backward, on CPU: QKV, attention projection, the gate's wg (no bias), the output head.
#pragma once

#include <span>

#include "kernels/gemm.hpp"

namespace moesim::kernels {

// y (rows x out) = x (rows x in) * W^T + b; b empty = no bias. `precision` is the GEMM's
// operands' (gemm.hpp); the bias is added in fp32.
void linear_forward(std::span<const float> x, std::span<const float> w, std::span<const float> b,
                    int rows, int in, int out, std::span<float> y,
                    GemmPrecision precision = GemmPrecision::fp32);

// dx (rows x in) = dy W; dw (out x in) = dy^T x; db (out) = column sums of dy. Any output
// may be empty to skip it. Outputs are overwritten unless accumulate is true (then added
// to, as when gradients accumulate over micro-batches; dx is always overwritten).
// `precision` is the two GEMMs' operands'; db sums the fp32 dy (in double).
void linear_backward(std::span<const float> dy, std::span<const float> x,
                     std::span<const float> w, int rows, int in, int out, std::span<float> dx,
                     std::span<float> dw, std::span<float> db, bool accumulate = false,
                     GemmPrecision precision = GemmPrecision::fp32);

}  // namespace moesim::kernels
