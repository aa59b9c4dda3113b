// Learning-rate schedules and the clipping factor; see lr_schedule.hpp.
#include "src/executor/lr_schedule.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <stdexcept>

#include "src/core/error.hpp"

namespace moesim {
namespace {

std::string number(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void require_rate(double v, const std::string& source, const char* field) {
  if (!std::isfinite(v) || v < 0) throw InputError(source, field, "expected a finite learning rate >= 0, got " + number(v));
}

}  // namespace

LrDecay parse_lr_decay(const std::string& text, const std::string& flag) {
  if (text == "constant") return LrDecay::constant;
  if (text == "linear" || text == "polynomial_decay") return LrDecay::linear;
  if (text == "cosine") return LrDecay::cosine;
  if (text == "inverse_sqrt") return LrDecay::inverse_sqrt;
  throw InputError(flag, "", "expected constant, linear (or polynomial_decay), cosine or inverse_sqrt, got \"" + text + "\"");
}

const char* to_string(LrDecay decay) {
  switch (decay) {
    case LrDecay::constant: return "constant";
    case LrDecay::linear: return "linear";
    case LrDecay::cosine: return "cosine";
    case LrDecay::inverse_sqrt: return "inverse_sqrt";
  }
  return "constant";
}

void validate(const LrSchedule& s, const std::string& source) {
  require_rate(s.lr, source, "lr");
  require_rate(s.warmup_init_lr, source, "warmup_init_lr");
  require_rate(s.end_lr, source, "end_lr");
  if (s.warmup_updates < 0)
    throw InputError(source, "warmup_updates", "expected a number of updates >= 0, got " + std::to_string(s.warmup_updates));
  if (s.total_updates < 0)
    throw InputError(source, "total_updates", "expected a number of updates >= 0, got " + std::to_string(s.total_updates));
  const std::string decay = to_string(s.decay);
  if (s.decay == LrDecay::linear || s.decay == LrDecay::cosine) {
    if (s.end_lr > s.lr)
      throw InputError(source, "end_lr",
                       "expected at most lr (" + number(s.lr) + ") for a " + decay + " decay, got " + number(s.end_lr));
    if (s.total_updates < 1 || s.total_updates < s.warmup_updates)
      throw InputError(source, "total_updates",
                       "expected at least max(1, warmup_updates = " + std::to_string(s.warmup_updates) + ") for a " +
                           decay + " decay, got " + std::to_string(s.total_updates));
  }
  if (s.decay == LrDecay::inverse_sqrt && s.warmup_updates < 1)
    throw InputError(source, "warmup_updates", "expected at least 1 for inverse_sqrt (it scales the decay), got " +
                                                   std::to_string(s.warmup_updates));
}

double lr_at(const LrSchedule& s, std::int64_t update) {
  if (update < 0) throw std::invalid_argument("lr_at: negative update " + std::to_string(update));
  const auto u = static_cast<double>(update);
  const auto w = static_cast<double>(s.warmup_updates);
  if (s.warmup_updates > 0 && update <= s.warmup_updates) return s.warmup_init_lr + (s.lr - s.warmup_init_lr) * u / w;
  switch (s.decay) {
    case LrDecay::constant: return s.lr;
    case LrDecay::linear: {
      if (update >= s.total_updates) return s.end_lr;
      const double remaining = 1.0 - (u - w) / (static_cast<double>(s.total_updates) - w);
      return (s.lr - s.end_lr) * remaining + s.end_lr;
    }
    case LrDecay::cosine: {
      if (update >= s.total_updates) return s.end_lr;
      const double progress = (u - w) / (static_cast<double>(s.total_updates) - w);
      return s.end_lr + (s.lr - s.end_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
    case LrDecay::inverse_sqrt: return s.lr * std::sqrt(w) / std::sqrt(u);
  }
  return s.lr;
}

double clip_scale(double global_norm, double max_norm) {
  if (!std::isfinite(global_norm)) return std::numeric_limits<double>::quiet_NaN();
  if (max_norm <= 0 || global_norm <= max_norm) return 1.0;
  return max_norm / (global_norm + 1e-6);
}

}  // namespace moesim
