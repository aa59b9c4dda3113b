// CPU reference of fairseq's Adam step.
#include "kernels/adam.hpp"

#include <cmath>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::require;
using detail::require_size;

float adam_step_size(const AdamOptions& options, int step)
{
    require(step >= 1, "adam_step_size", "step must be >= 1 (the first step is 1)");
    const double bc1 = 1.0 - std::pow(static_cast<double>(options.beta1), step);
    const double bc2 = 1.0 - std::pow(static_cast<double>(options.beta2), step);
    return static_cast<float>(options.lr * std::sqrt(bc2) / bc1);
}

void adam_step(std::span<float> params, std::span<const float> grads, std::span<float> exp_avg,
               std::span<float> exp_avg_sq, int step, const AdamOptions& options)
{
    const char* fn = "adam_step";
    require_size(grads.size(), params.size(), fn, "grads");
    require_size(exp_avg.size(), params.size(), fn, "exp_avg");
    require_size(exp_avg_sq.size(), params.size(), fn, "exp_avg_sq");
    const float step_size = adam_step_size(options, step);
    const float b1 = options.beta1, b2 = options.beta2, wd = options.weight_decay;
    const float decay = options.decoupled_weight_decay ? options.lr * wd : 0.0f;
    const float l2 = options.decoupled_weight_decay ? 0.0f : wd;
    for (std::size_t i = 0; i < params.size(); ++i) {
        const float p = params[i];
        const float g = grads[i] + l2 * p;
        const float m = b1 * exp_avg[i] + (1.0f - b1) * g;
        const float v = b2 * exp_avg_sq[i] + (1.0f - b2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        params[i] = p - decay * p - step_size * m / (std::sqrt(v) + options.eps);
    }
}

}  // namespace moesim::kernels
