// fairseq's dynamic loss scaling, step by step as dynamic_loss_scaler.py has it.
#include "src/executor/loss_scaler.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace moesim::exec {

std::int64_t default_scale_window(int world_size, std::int64_t micro_batches) {
  const auto window = static_cast<std::int64_t>(16384.0 / world_size / static_cast<double>(micro_batches));
  return std::max<std::int64_t>(window, 1);
}

DynamicLossScaler::DynamicLossScaler(const LossScalerOptions& options)
    : scale_(options.init_scale), min_scale_(options.min_scale), window_(options.window) {
  assert(window_ >= 1 && "resolve the default window before making the scaler");
}

bool DynamicLossScaler::check_overflow(double grad_norm) {
  if (std::isfinite(grad_norm)) return false;
  const double previous = scale_;
  last_overflow_iter_ = iter_;
  scale_ /= 2;  // tolerance 0: every overflow halves
  if (scale_ <= min_scale_) {
    scale_ = previous;
    std::ostringstream what;
    what << "minimum loss scale reached (" << min_scale_ << "): the loss is probably exploding; "
         << "try a lower learning rate, gradient clipping (--clip-norm) or a larger batch";
    throw std::runtime_error(what.str());
  }
  ++iter_;
  return true;
}

void DynamicLossScaler::update() {
  if ((iter_ - last_overflow_iter_) % window_ == 0) scale_ *= 2;
  ++iter_;
}

}  // namespace moesim::exec
