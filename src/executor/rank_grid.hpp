// Where one rank sits in a plan's grid and which experts it holds. Ranks follow Megatron's
// order (src/simulate/placement.hpp): tensor parallel fastest, then data parallel, whose
// consecutive blocks of `ep` ranks are the expert-parallel groups, then pipeline stages.
#pragma once

#include <vector>

#include "src/plan/plan.hpp"

namespace moesim::exec {

struct RankGrid {
  int world = 0;  // this rank in the world
  int dp = 0, tp = 0, pp = 0;
  int ep = 0;   // rank inside its expert-parallel group (= dp % plan.ep)
  int edp = 0;  // which replica of its experts (= dp / plan.ep)
};

RankGrid rank_grid(const Plan& plan, int world_rank);

// Experts over the ranks of an expert-parallel group. A slot is an expert's place in
// owner-major order (the owner's experts back to back): the dispatch buffer is laid out by
// slot so that the rows bound for one owner are contiguous.
struct ExpertShard {
  int experts = 0;
  int ep = 1;
  ExpertPlacement placement = ExpertPlacement::contiguous;

  int local_count() const { return experts / ep; }
  // The expert held at position `local` of rank `owner`.
  int expert_at(int owner, int local) const {
    return placement == ExpertPlacement::contiguous ? owner * local_count() + local : local * ep + owner;
  }
  int expert_of_slot(int slot) const { return expert_at(slot / local_count(), slot % local_count()); }
  // slot_of_expert()[e]: the inverse of expert_of_slot.
  std::vector<int> slot_of_expert() const {
    std::vector<int> out(static_cast<std::size_t>(experts));
    for (int s = 0; s < experts; ++s) out[static_cast<std::size_t>(expert_of_slot(s))] = s;
    return out;
  }
};

}  // namespace moesim::exec
