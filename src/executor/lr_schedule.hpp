// The executor's learning-rate schedule (a linear warm-up, then fairseq's constant,
// polynomial_decay (power 1), cosine or inverse_sqrt decay) and fairseq's gradient-norm
// clipping factor. Closed forms, so a test can state the value at any update exactly.
#pragma once

#include <cstdint>
#include <string>

namespace moesim {

enum class LrDecay { constant, linear, cosine, inverse_sqrt };

// Learning rates are plain numbers (the optimiser's step size), updates are optimizer
// steps. After the warm-up:
//   constant      lr
//   linear        fairseq's polynomial_decay with power 1: from lr at the end of warm-up
//                 to end_lr at total_updates, end_lr after
//   cosine        end_lr + (lr - end_lr) * (1 + cos(pi * progress)) / 2 with progress from
//                 0 at the end of warm-up to 1 at total_updates, end_lr after
//   inverse_sqrt  fairseq's inverse_sqrt: lr * sqrt(warmup_updates / update)
struct LrSchedule {
  LrDecay decay = LrDecay::constant;
  double lr = 1e-3;                  // peak, reached at the last warm-up update
  double warmup_init_lr = 0;         // the warm-up's starting point (update 0)
  std::int64_t warmup_updates = 0;   // 0: no warm-up
  double end_lr = 0;                 // linear, cosine: the value at total_updates
  std::int64_t total_updates = 0;    // linear, cosine: where the decay ends
};

// "constant", "linear" (also fairseq's name "polynomial_decay"), "cosine", "inverse_sqrt";
// other text is an InputError whose file is `flag`.
LrDecay parse_lr_decay(const std::string& text, const std::string& flag = "--lr-scheduler");
const char* to_string(LrDecay decay);

// Throws InputError naming `source` (a config file or a flag) and the field: lr,
// warmup_init_lr or end_lr negative or not finite; warmup_updates or total_updates
// negative; end_lr above lr, or total_updates below max(1, warmup_updates), for linear
// and cosine; warmup_updates 0 for inverse_sqrt (its decay is scaled by the warm-up
// length, and fairseq's 0 gives a rate of 0 forever).
void validate(const LrSchedule& schedule, const std::string& source);

// The learning rate of update `update` (the update-th optimizer step, counting from 1):
// warmup_init_lr + (lr - warmup_init_lr) * update / warmup_updates while update <=
// warmup_updates, so update 1 already moves and update warmup_updates runs at lr; the
// decay after. It equals fairseq's scheduler at num_updates = update (fairseq applies that
// value one step later, its first step running at warmup_init_lr; here no step is wasted
// at a rate of 0). With warmup_updates 0 there is no warm-up and the decay starts at lr.
// Update 0 (before training, for a log) continues the same formulas: warmup_init_lr under a
// warm-up, else lr. The schedule is assumed valid; a negative update is a bug
// (std::invalid_argument).
double lr_at(const LrSchedule& schedule, std::int64_t update);

// The factor gradients are multiplied by under fairseq's clip_grad_norm_: max_norm /
// (global_norm + 1e-6) when global_norm > max_norm > 0, else 1 (max_norm <= 0 turns
// clipping off). fairseq takes min(1, max_norm / (norm + 1e-6)) in every case, which
// differs from this only for a norm within 1e-6 of max_norm, where this leaves the
// gradients untouched. A norm that is not finite gives NaN: the caller skips the update
// (fairseq's trainer does, on overflow) rather than scale by 0 and hide it.
double clip_scale(double global_norm, double max_norm);

}  // namespace moesim
