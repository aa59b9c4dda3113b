// Expert capacity: how many token slots each expert has for S tokens routed on one rank.
// The same function sizes the dispatch buffers in memory accounting, the expert GEMMs in
// FLOP accounting and (later) the executor's buffers, so they cannot disagree.
#pragma once

#include <cstdint>
#include <optional>

#include "src/model/model_spec.hpp"

namespace moesim {

// Slots per expert for `tokens` tokens on a rank, or nullopt when dropless.
// per_choice (fairseq, DeepSpeed): k * ceil(cf * S / E); total (Megatron): ceil(k * cf * S / E);
// both at least min_capacity.
std::optional<std::int64_t> expert_capacity(const MoeSpec& moe, std::int64_t tokens, bool training = true);

// Token slots one rank computes per MoE layer for `tokens` local tokens: E * capacity
// (every expert's buffer is padded to capacity), or k * S when dropless (the mean; the
// routing model gives the most-loaded rank).
std::int64_t expert_slots(const MoeSpec& moe, std::int64_t tokens, bool training = true);

}  // namespace moesim
