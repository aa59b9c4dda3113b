// LayerNorm and RMSNorm over the last dimension of a rows x cols matrix, forward and
// backward. The forward saves per-row statistics (mean and 1/std, or 1/rms) for the
// backward, as fused training kernels do. Statistics are accumulated in double on CPU.
#pragma once

#include <span>

namespace moesim::kernels {

// y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + eps) with the biased
// variance (torch.nn.LayerNorm). Writes y (rows x cols), mean and rstd (rows).
void layer_norm(std::span<const float> x, std::span<const float> gamma,
                std::span<const float> beta, int rows, int cols, float eps, std::span<float> y,
                std::span<float> mean, std::span<float> rstd);

// From dy, the forward's x, gamma, mean and rstd: dx (rows x cols), dgamma and dbeta
// (cols; empty to skip). Outputs are overwritten, not accumulated.
void layer_norm_backward(std::span<const float> dy, std::span<const float> x,
                         std::span<const float> gamma, std::span<const float> mean,
                         std::span<const float> rstd, int rows, int cols, std::span<float> dx,
                         std::span<float> dgamma, std::span<float> dbeta);

// y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + eps) (Zhang & Sennrich 2019).
void rms_norm(std::span<const float> x, std::span<const float> gamma, int rows, int cols,
              float eps, std::span<float> y, std::span<float> rstd);

// dx (rows x cols) and dgamma (cols; empty to skip), overwritten.
void rms_norm_backward(std::span<const float> dy, std::span<const float> x,
                       std::span<const float> gamma, std::span<const float> rstd, int rows,
                       int cols, std::span<float> dx, std::span<float> dgamma);

}  // namespace moesim::kernels
