// The plans the search considers: every factorisation of the GPUs into dp x tp x cp x pp,
// the expert-parallel group inside dp x cp with experts split as attention is or whole
// (MoE parallel folding), sequence parallelism wherever tp is, micro-batch sizes, pipeline
// schedules and virtual stages, ZeRO stages, recomputation and expert placement, narrowed
// by the user's constraints. Enumeration order is fixed, and a plan's index in it breaks ties.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

struct SearchSpace {
  int gpus = 0;  // dp * tp * pp of every plan; 0: all the cluster's GPUs
  // The fields the search does not vary (gbs, precision, master_weights,
  // optimizer_dtype, attention) come from here, as do the values of fixed fields.
  Plan base;
  std::set<std::string> fixed;  // searched fields pinned to base's value (--fix)
  int max_tp = 0;               // 0: the GPUs of one node (tensor parallelism stays on NVLink)
  int max_cp = 0;               // 0: the GPUs of one node
  int max_pp = 0;               // 0: no limit
  int max_mbs = 64;
  // Round-robin placement is enumerated beside contiguous only when it can change the
  // cost: a skewed routing and 1 < ep < experts.
  bool placements = false;
};

// The fields enumerate_plans varies; --fix may pin any of them, or set a base field.
const std::vector<std::string>& searched_fields();

// Applies "key=value,key=value" (the inline plan syntax) to `space`: searched fields are
// pinned, others set on the base plan. Errors name `source` (the flag) and the key.
void apply_fixed(SearchSpace& space, const std::string& text, const std::string& source);

// Every plan of the space that obeys check_plan_rules and divides the model and cluster
// (check_plan). Equivalent plans are listed once: with dp = 1 only zero 0 (there is
// nothing to shard), with pp = 1 only the 1f1b schedule (no pipeline to order).
// Memory is not checked here; the screening tier rejects what does not fit.
std::vector<Plan> enumerate_plans(const ModelSpec& model, const ClusterSpec& cluster, const SearchSpace& space);

// The positive divisors of n, ascending.
std::vector<std::int64_t> divisors(std::int64_t n);

}  // namespace moesim
