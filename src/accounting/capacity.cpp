// Capacity rules of fairseq/DeepSpeed (per choice) and Megatron (total).
#include "src/accounting/capacity.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

std::optional<std::int64_t> expert_capacity(const MoeSpec& moe, std::int64_t tokens, bool training) {
  std::optional<double> cf = training ? moe.capacity_factor : moe.eval_capacity_factor;
  if (!training && !cf) cf = moe.capacity_factor;
  if (!cf) return std::nullopt;
  const double per_expert = *cf * static_cast<double>(tokens) / moe.experts;
  std::int64_t c = moe.capacity_rounding == CapacityRounding::per_choice
                       ? moe.top_k * static_cast<std::int64_t>(std::ceil(per_expert))
                       : static_cast<std::int64_t>(std::ceil(moe.top_k * per_expert));
  return std::max(c, moe.min_capacity);
}

std::int64_t expert_slots(const MoeSpec& moe, std::int64_t tokens, bool training) {
  auto c = expert_capacity(moe, tokens, training);
  return c ? moe.experts * *c : moe.top_k * tokens;
}

}  // namespace moesim
