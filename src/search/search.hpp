// The plan search: enumerate the space, screen every plan with the analytic tier
// (rejecting what does not fit in memory), re-rank the best candidates on the
// discrete-event tier, and score the user's own plans beside them. Under MPI the plans
// are dealt out over the ranks by index and the results gathered on rank 0; every plan
// is scored the same wherever it runs, so the result does not depend on the rank count.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "src/cluster/cluster_spec.hpp"
#include "src/comm/communicator.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/search/search_space.hpp"
#include "src/simulate/result.hpp"

namespace moesim {

struct SearchOptions {
  int rerank = 32;       // candidates the event tier re-scores (and as many per constrained family)
  double tie = 0.01;     // plans within this fraction of the winner's time tie with it
  double headroom = 0;   // fraction of GPU memory a plan must leave free
  std::vector<Plan> baselines;          // the user's own plans, scored whatever the space
  std::vector<std::string> baseline_names;
  // Called on rank 0 as work completes: (done, total, phase).
  std::function<void(std::size_t, std::size_t, const std::string&)> progress;
};

struct Candidate {
  std::size_t index = 0;     // in the enumeration (kOutsideSpace for a baseline outside it)
  Plan plan;
  double screen_s = 0;       // the analytic tier's iteration time
  double memory = 0;         // peak bytes per GPU, closed form
  bool fits = false;         // under the GPU's memory less the headroom, in both tiers
  std::optional<SimResult> event;  // the event tier's result, once re-ranked
  double time() const { return event ? event->iteration_s : screen_s; }
};
inline constexpr std::size_t kOutsideSpace = static_cast<std::size_t>(-1);

struct BaselineScore {
  std::string name;
  Candidate candidate;
  std::size_t screen_rank = 0;  // 1-based place among the fitting plans by screening time; 0 when outside
};

struct SearchResult {
  std::size_t enumerated = 0;
  std::size_t fitting = 0;            // passed the screening tier's memory check
  std::size_t reranked = 0;           // re-scored on the event tier
  std::size_t rejected_by_event = 0;  // re-ranked, but over memory on the simulated timeline
  std::vector<Candidate> ranked;      // every re-ranked candidate that fits, fastest first (ties by index)
  std::size_t ties = 0;               // ranked[1 .. ties] are within `tie` of ranked[0]
  std::optional<Candidate> best_without_pipeline;  // pp = 1
  std::optional<Candidate> best_without_tensor;    // tp = 1
  std::vector<BaselineScore> baselines;
  double memory_limit = 0;            // bytes per GPU a plan may use
};

// The screening tier on one plan: the closed-form peak memory and, when it is within
// `memory_limit`, the analytic iteration time (0 otherwise). `load`: the routing sample
// for the plan's micro-batch (nullptr for dense models).
struct Screened {
  double seconds = 0;
  double memory = 0;
  bool fits = false;
};
Screened screen_plan(const ModelSpec& model, const Plan& plan, const ClusterSpec& cluster, const Profile& profile,
                     const ExpertLoad* load, double memory_limit);

// Collective over `comm`: every rank calls it with the same arguments; the result is
// complete on rank 0 (other ranks get the counts only). Throws InputError when the space
// has no global batch or no plan of it fits.
SearchResult search_plans(const ModelSpec& model, const ClusterSpec& cluster, const Profile& profile,
                          const RoutingSpec& routing, const SearchSpace& space, const SearchOptions& options,
                          Communicator& comm);

}  // namespace moesim
