// fairseq's DynamicLossScaler (fairseq/optim/dynamic_loss_scaler.py), the loss scaling of
// `moesim run`'s precision=fp16: the backward starts from the loss gradient times scale();
// an update whose gradients overflowed (a global gradient norm that is inf or NaN) is
// skipped and the scale halved; after `window` updates without one it is doubled.
#pragma once

#include <cstdint>

namespace moesim::exec {

// fairseq's defaults: --fp16-init-scale 2^7, --min-loss-scale 1e-4, a scale factor of 2
// and --fp16-scale-tolerance 0 (every overflow halves). --fp16-scale-window has no fixed
// default there: unset, it is 2^14 / (distributed_world_size * update_freq), which
// default_scale_window() computes.
struct LossScalerOptions {
  double init_scale = 128;       // fairseq --fp16-init-scale (2^7)
  std::int64_t window = 0;       // fairseq --fp16-scale-window; 0: default_scale_window()
  double min_scale = 1e-4;       // fairseq --min-loss-scale
};

// fairseq's unset --fp16-scale-window: int(2^14 / world_size / update_freq), at least 1.
std::int64_t default_scale_window(int world_size, std::int64_t micro_batches);

class DynamicLossScaler {
 public:
  // window >= 1 (resolve 0 with default_scale_window first); init_scale > min_scale.
  explicit DynamicLossScaler(const LossScalerOptions& options);

  double scale() const { return scale_; }
  // On resume: the scale a checkpoint saved (fairseq saves only the scale, so the window
  // counts from the resumed update).
  void set_scale(double scale) { scale_ = scale; }

  // fairseq's check_overflow: `grad_norm`, the norm of the scaled gradients over every
  // rank, is inf or NaN: the update must be skipped; the scale is halved and true
  // returned. Throws std::runtime_error (fairseq's FloatingPointError) when the halved
  // scale would reach min_scale. Finite: returns false, nothing changes.
  bool check_overflow(double grad_norm);
  // fairseq's update(), after an update that stepped: doubles the scale when this is the
  // window-th update since the last overflow (or since the start).
  void update();

 private:
  double scale_;
  double min_scale_;
  std::int64_t window_;
  std::int64_t iter_ = 0, last_overflow_iter_ = -1;
};

}  // namespace moesim::exec
