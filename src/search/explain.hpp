// Why one plan beats another: their breakdowns side by side, and one sentence naming the
// part of the iteration that differs most and the plan fields behind the difference.
#pragma once

#include <string>
#include <vector>

#include "src/plan/plan.hpp"
#include "src/simulate/result.hpp"

namespace moesim {

// One line of the side-by-side breakdown, per iteration. `seconds` rows add up to the
// iteration time; the others (throughput, MFU, memory) are context.
struct ComparisonRow {
  std::string name;  // "compute: moe", "exposed comm: ep_all_to_all", "pipeline bubble", ...
  double a = 0, b = 0;
  bool seconds = true;
};

// The union of both results' components, in a fixed order: compute by category, exposed
// communication by collective, bubble, optimizer; then peak memory (bytes), tokens/s, MFU.
std::vector<ComparisonRow> compare_results(const SimResult& a, const SimResult& b);

// The fields in which two plans differ, as "ep 8 vs 64, zero 3 vs 2" (empty if none).
std::string plan_difference(const Plan& a, const Plan& b);

// One sentence, to follow the name of `a`: how much faster `a` is than `b` (called
// `other`), or that they tie within `tie`; which component of the iteration saves the
// most (and costs the most); and the fields that differ.
std::string why_faster(const Plan& a, const SimResult& ra, const Plan& b, const SimResult& rb, const std::string& other,
                       double tie);

}  // namespace moesim
