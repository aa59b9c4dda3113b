// One Adam step over a flat fp32 parameter buffer, as fairseq's optim/adam.py does it:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
// (eps is added to the uncorrected sqrt(v), fairseq's and the original paper's form;
// torch.optim.Adam adds it after correcting, which differs by eps's scale only).
// Weight decay: decoupled (AdamW, fairseq's behaviour) p -= lr * wd * p from the old p,
// or classic L2 (torch.optim.Adam) g += wd * p before the moments.
#pragma once

#include <span>

namespace moesim::kernels {

struct AdamOptions {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;
    bool decoupled_weight_decay = true;  // true: AdamW/fairseq; false: L2 into the gradient
};

// Scalars of step `step` (1 for the first step): the bias-corrected step size
// lr * sqrt(1 - b2^step) / (1 - b1^step), computed in double once and shared by CPU and
// CUDA so both apply the same rounding.
float adam_step_size(const AdamOptions& options, int step);

// Updates params, exp_avg (m) and exp_avg_sq (v) in place from grads; all spans the same
// length; step >= 1 counts this step. Throws std::invalid_argument on a size mismatch or
// step < 1.
void adam_step(std::span<float> params, std::span<const float> grads, std::span<float> exp_avg,
               std::span<float> exp_avg_sq, int step, const AdamOptions& options);

}  // namespace moesim::kernels
